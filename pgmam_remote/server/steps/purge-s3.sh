#!/bin/sh
# Usage: purge-s3.sh REPO APP
# On a server: deletes APP's backups and archived WAL from S3 repo REPO (`inv dropcluster
# --purge-backups`), after the WAL shipper has stopped copying them there. Runs before APP's own
# stanza config goes (the stanza's paths come from it). A new app of that name then starts afresh.
set -e
conf=/etc/pgbackrest/pgmam/repos/$1.conf
app=$2
rm -rf -- "/var/lib/pgmam/ship/$1/$app"
[ -f "/etc/pgbackrest/conf.d/$app.conf" ] || { echo "app $app has no stanza config here"; exit 1; }
cd /tmp
repo() { runuser -u postgres -- pgbackrest --config="$conf" --config-include-path=/etc/pgbackrest/conf.d --stanza="$app" "$@"; }
repo stop || true
repo --force stanza-delete
repo start || true
