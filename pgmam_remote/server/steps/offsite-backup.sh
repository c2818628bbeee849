#!/bin/sh
# Usage: offsite-backup.sh SERVER APP TYPE
# On a repository host: a backup of TYPE (full, diff, incr) of SERVER's app APP into SERVER's
# repository here. pgBackRest reads the data over SSH from SERVER as postgres. It waits until the
# WAL that makes the backup consistent arrives from SERVER's WAL shipper (archive-timeout).
set -e
cd /tmp
exec runuser -u postgres -- pgbackrest --config-path="/etc/pgbackrest/pgmam/hosts/$1" --stanza="$2" --type="$3" backup
