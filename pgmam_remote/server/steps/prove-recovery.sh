#!/bin/sh
# Usage: prove-recovery.sh SOCKET_DIR PORT LOG OLD_TIMELINE DATA [end]
# Waits until the restored instance has left recovery, then proves it stopped at its target on a
# new timeline, with SQL and the timeline history file: nothing here reads a log message, so the
# server's language and logging settings do not matter. Prints pgmam-note lines.
set -u
sock=$1; port=$2; log=$3; old_tl=$4; data=$5; upto=${6:-target} # end: to the end of the archived WAL
q() { runuser -u postgres -- psql -XAtq -h "$sock" -p "$port" -d postgres -c "$1" 2> /dev/null; }
while :; do
  [ "$(q 'select pg_is_in_recovery()')" = f ] && break
  pid=$(head -n 1 "$data/postmaster.pid" 2> /dev/null || true)
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ] || [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -c1)" = Z ]; then
    echo "the restored instance stopped during recovery:"
    tail -n 15 "$log"
    exit 1
  fi
  sleep 0.2
done
tl=$(q "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
if [ -z "$tl" ] || [ "$tl" -le "$old_tl" ]; then
  echo "the restored instance is not on a new timeline (timeline ${tl:-unknown}, live is on $old_tl)"
  exit 1
fi
# Why recovery stopped, from the new timeline's history file (never translated): "before/after
# <commit>", "at restore point", "reached consistency".
history="$data/pg_wal/$(printf '%08X' "$tl").history"
stop=$(awk -F '\t' 'NF >= 3 { reason = $3 } END { print reason }' "$history" 2> /dev/null)
[ "$upto" != end ] || [ "$stop" != "no recovery target specified" ] || stop="end of the archived WAL"
case $stop in
  "" | "no recovery target specified")
    echo "recovery did not stop at the target (timeline $tl history says: ${stop:-nothing})"
    tail -n 15 "$log"
    exit 1
    ;;
esac
echo "pgmam-note timeline=$tl"
echo "pgmam-note stop=$(printf '%s' "$stop" | tr ' ' '_')"
last=$(q "select to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
[ -n "$last" ] && echo "pgmam-note last_tx=$(printf '%s' "$last" | tr ' ' '_')"
[ -z "${JOB_DIR:-}" ] || cp "$log" "$JOB_DIR/recovery.log" 2> /dev/null || true
