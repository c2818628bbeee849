#!/bin/sh
# Usage: config-into-data.sh APP VERSION
# Puts a copy of the cluster's config (/etc/postgresql/VERSION/APP/) into its data dir as
# pgmam-config.tar.gz, so that every backup, in every repository, carries it: a new server rebuilt
# from an off-host backup gets the app's settings back. PostgreSQL ignores the file.
set -e
data=/var/lib/postgresql/$2/$1
tar -C "/etc/postgresql/$2" -czf "$data/pgmam-config.tar.gz.tmp" "$1"
chown postgres:postgres "$data/pgmam-config.tar.gz.tmp"
chmod 0600 "$data/pgmam-config.tar.gz.tmp"
mv -f "$data/pgmam-config.tar.gz.tmp" "$data/pgmam-config.tar.gz"
