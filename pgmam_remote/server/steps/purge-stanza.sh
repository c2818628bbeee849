#!/bin/sh
# Usage: purge-stanza.sh APP
# Deletes APP's stanza, its backups, its config snapshots and pgmam's records of it.
set -e
cd /tmp
runuser -u postgres -- pgbackrest --stanza="$1" stop || true
runuser -u postgres -- pgbackrest --stanza="$1" --force stanza-delete
runuser -u postgres -- pgbackrest --stanza="$1" start || true
rm -rf "/var/lib/pgbackrest/pgmam-config/$1" "/var/lib/pgmam/scheduled/$1" "/var/lib/pgmam/verify/$1" \
  "/var/lib/pgmam/verify/$1@"* "/var/lib/pgmam/restore-points/$1"
rm -f "/etc/pgbackrest/conf.d/$1.conf"
