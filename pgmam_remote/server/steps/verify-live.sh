#!/bin/sh
# Usage: verify-live.sh PORT WANT
# Proves the cluster on PORT left recovery and accepts writes, on the timeline WANT names:
# noted (the one the restore proof noted), new (a newer one than from_timeline) or any.
set -u
port=$1; want=$2
tl="('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
q() { runuser -u postgres -- psql -XAtq -F ' ' -v ON_ERROR_STOP=1 -p "$port" -d postgres -c "$1" 2>&1; }
i=0
until [ "$(q 'select pg_is_in_recovery()')" = f ]; do
  i=$((i + 1))
  [ $i -lt 3000 ] || { echo "the cluster is still in recovery"; exit 1; }
  sleep 0.2
done
row=$(q "select $tl, txid_current()") || { echo "the cluster does not accept writes: $row"; exit 1; }
live_tl=${row%% *}
case "$want" in
  noted)
    expected=$(sed -n 's/^timeline=//p' "$JOB_DIR/notes" | tail -n 1)
    [ "$live_tl" = "$expected" ] || { echo "the cluster is on timeline $live_tl, expected $expected"; exit 1; }
    ;;
  new)
    before=$(sed -n 's/^from_timeline=//p' "$JOB_DIR/notes" | tail -n 1)
    [ "$live_tl" -gt "$before" ] || { echo "the cluster is on timeline $live_tl, not on a new one after $before"; exit 1; }
    ;;
esac
echo "pgmam-note live_timeline=$live_tl"
