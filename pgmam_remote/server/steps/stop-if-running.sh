#!/bin/sh
# Usage: stop-if-running.sh VERSION APP
# The undo of starting a cluster: stop it if it runs (after a power cut it does not).
pg_ctlcluster "$1" "$2" status > /dev/null 2>&1 || exit 0
exec pg_ctlcluster --mode fast "$1" "$2" stop
