#!/bin/sh
# Usage: drill.sh RUN_DIR PORT VERSION RECORD BACKUP TARGET
# Examines a restored throwaway instance (its socket is in RUN_DIR): every database accepts
# connections, every table is counted, and pg_amcheck checks heap and btree indexes when it is
# installed. Records the result where `inv status` reads it, in /var/lib/pgmam/verify/RECORD
# (APP, or APP@REPO for a drill from an off-host repo), with the seconds since the restore began,
# and prints pgmam-note lines.
set -u
sock=$1; port=$2; version=$3; record=$4; backup=$5; target=$6
q() { runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -h "$sock" -p "$port" "$@"; }
dbs=$(q -d postgres -c "select datname from pg_database where datallowconn order by 1") || exit 1
tables=0; rows=0
for db in $dbs; do
  q -d "$db" -c 'select 1' > /dev/null || { echo "database $db does not accept connections"; exit 1; }
  counts=$(q -d "$db" -c "select format('%s.%s', n.nspname, c.relname), (xpath('/row/n/text()',
      query_to_xml(format('select count(*) as n from %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg_toast%' order by 1") || { echo "counting rows in $db failed"; exit 1; }
  if [ -n "$counts" ]; then
    printf '%s\n' "$counts" | sed "s/^/rows $db./"
    tables=$((tables + $(printf '%s\n' "$counts" | wc -l)))
    rows=$((rows + $(printf '%s\n' "$counts" | awk -F'|' '{s += $2} END {print s + 0}')))
  fi
done
amcheck=skipped
if [ -x "/usr/lib/postgresql/$version/bin/pg_amcheck" ]; then
  runuser -u postgres -- "/usr/lib/postgresql/$version/bin/pg_amcheck" -h "$sock" -p "$port" \
    --all --install-missing --heapallindexed
  rc=$?
  case $rc in
    0) amcheck=ok ;;
    2) echo "pg_amcheck found corruption"; exit 1 ;;
    *) echo "pg_amcheck failed (exit $rc)"; exit 1 ;;
  esac
fi
echo "pgmam-note tables=$tables"
echo "pgmam-note rows=$rows"
echo "pgmam-note amcheck=$amcheck"
now=$(date +%s)
seconds=$((now - $(cat "$sock/started" 2> /dev/null || echo "$now")))
mkdir -p /var/lib/pgmam/verify
printf '%s ok %s %s %s %s %s %s\n' "$now" "$backup" "$tables" "$rows" "$amcheck" "$target" "$seconds" \
  >> "/var/lib/pgmam/verify/$record"
