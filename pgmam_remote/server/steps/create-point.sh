#!/bin/sh
# Usage: create-point.sh PORT APP NAME
# Creates the named restore point NAME in APP's WAL and records it; prints its LSN.
set -e
cd /tmp
row=$(printf '%s\n' "select pg_create_restore_point(:'name') || ' ' || extract(epoch from now())" \
  | runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p "$1" -d postgres -v name="$3")
lsn=${row% *}; at=${row#* }
mkdir -p /var/lib/pgmam/restore-points
printf '%s %s %s\n' "$3" "$at" "$lsn" >> "/var/lib/pgmam/restore-points/$2"
echo "$lsn"
