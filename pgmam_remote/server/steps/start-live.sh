#!/bin/sh
# Usage: start-live.sh VERSION APP PORT
# Starts a cluster and notes the moment it accepts connections: pg_isready's exit status (no
# message to read) every 50 ms while pg_ctlcluster, which polls far less often, waits for it too.
# Once the cluster accepts connections the step is done: pg_ctlcluster (through systemd, its unit's
# bookkeeping) ends by itself about 2 s later, and the steps after this one need only connections.
pg_ctlcluster "$1" "$2" start &
starter=$!
up=""
while [ -z "$up" ] && kill -0 "$starter" 2> /dev/null; do
  if pg_isready -q -h /var/run/postgresql -p "$3"; then up=$(date +%s.%N); else sleep 0.05; fi
done
if [ -z "$up" ]; then
  wait "$starter" || exit # pg_ctlcluster ended first: its status says whether the cluster started
  up=$(date +%s.%N)
fi
echo "pgmam-note up_at=$up"
