#!/bin/sh
# Usage: push-history.sh APP DATA
# A copy promoted with archiving off (so that it never competes with the live cluster's archiver)
# must still send its timeline history file to the stanza, or no later restore could follow it.
set -e
cd /tmp
for h in "$2"/pg_wal/*.history; do
  [ -f "$h" ] && runuser -u postgres -- pgbackrest --stanza="$1" --pg1-path="$2" --no-archive-async archive-push "$h"
done
