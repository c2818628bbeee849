#!/bin/sh
# Usage: stop-live.sh VERSION APP PORT
# Stops the live cluster after a checkpoint (a shorter shutdown), noting the moment: the downtime
# starts here.
runuser -u postgres -- psql -XAtq -p "$3" -d postgres -c checkpoint > /dev/null 2>&1 || true
echo "pgmam-note down_at=$(date +%s.%N)"
exec pg_ctlcluster --mode fast "$1" "$2" stop
