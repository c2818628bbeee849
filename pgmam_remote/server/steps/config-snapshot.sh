#!/bin/sh
# Usage: config-snapshot.sh APP VERSION
# pgBackRest does not back up /etc/postgresql/VERSION/APP/, so with every backup pgmam stores it in
# the repository, named after the newest backup label, and drops the snapshots of expired
# backups. Prints "pgmam-note snapshot=<file>".
set -e
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
app=$1; version=$2
cd /tmp
label=$("$(dirname "$0")/newest-label.sh" "$app")
[ -n "$label" ] || { echo "no backup to attach the config snapshot to"; exit 1; }
dir=/var/lib/pgbackrest/pgmam-config/$app
install -d -o postgres -g postgres -m 0750 /var/lib/pgbackrest/pgmam-config "$dir"
tar -C "/etc/postgresql/$version" -czf "$dir/$label.tar.gz.tmp" "$app"
chown postgres:postgres "$dir/$label.tar.gz.tmp"
mv -f "$dir/$label.tar.gz.tmp" "$dir/$label.tar.gz"
for f in "$dir"/*.tar.gz; do
  [ -d "/var/lib/pgbackrest/backup/$app/$(basename "$f" .tar.gz)" ] || rm -f "$f"
done
echo "pgmam-note backup=$label"
echo "pgmam-note snapshot=$dir/$label.tar.gz"
