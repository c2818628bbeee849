#!/bin/sh
# Usage: purge-hosted.sh SERVER APP
# On a repository host: deletes SERVER's app APP from SERVER's repository here, its backups and
# archived WAL, and its stanza config (`inv dropcluster --purge-backups`). A new app of that name
# on SERVER then starts afresh here.
set -e
conf=/etc/pgbackrest/pgmam/hosts/$1
[ -f "$conf/conf.d/$2.conf" ] || { echo "$1's app $2 has nothing here"; exit 0; }
cd /tmp
runuser -u postgres -- pgbackrest --config-path="$conf" --stanza="$2" stop || true
runuser -u postgres -- pgbackrest --config-path="$conf" --stanza="$2" --force stanza-delete
runuser -u postgres -- pgbackrest --config-path="$conf" --stanza="$2" start || true
rm -f "$conf/conf.d/$2.conf"
