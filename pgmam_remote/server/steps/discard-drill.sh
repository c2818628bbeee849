#!/bin/sh
# Usage: discard-drill.sh RECORD BACKUP TARGET DIR   (RECORD: APP, or APP@REPO; see drill.sh)
# The undo of restoring a drill copy: the drill failed (recorded), and its copy is removed.
"$(dirname "$0")/record-drill-failure.sh" "$1" "$2" "$3"
exec rm -rf -- "$4"
