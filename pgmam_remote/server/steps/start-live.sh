#!/bin/sh
# Usage: start-live.sh VERSION APP PORT
# Starts a cluster and notes the moment it accepts connections: pg_isready's exit status (no
# message to read) every 50 ms while pg_ctlcluster, which polls far less often, waits for it too.
pg_ctlcluster "$1" "$2" start &
starter=$!
up=""
while [ -z "$up" ] && kill -0 "$starter" 2> /dev/null; do
  if pg_isready -q -h /var/run/postgresql -p "$3"; then up=$(date +%s.%N); else sleep 0.05; fi
done
wait "$starter" || exit
[ -n "$up" ] || up=$(date +%s.%N)
echo "pgmam-note up_at=$up"
