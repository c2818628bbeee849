#!/bin/sh
# Usage: into-restore.sh SOURCE DATA BACKUP [pgbackrest target options...]
# Restores SOURCE's backup into the empty data dir of a new cluster, with archiving off.
set -e
source=$1; data=$2; backup=$3; shift 3
find "$data" -mindepth 1 -delete
cd /tmp
# its own spool: a restore empties the stanza's spool dir, where the source's archiving queue lives
install -d -o postgres -g postgres -m 0700 "/var/lib/pgmam/run/$source-into"
runuser -u postgres -- pgbackrest --stanza="$source" --pg1-path="$data" --set="$backup" \
  --spool-path="/var/lib/pgmam/run/$source-into/spool" --target-action=promote --archive-mode=off "$@" restore
