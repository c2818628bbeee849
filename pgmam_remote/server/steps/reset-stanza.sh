#!/bin/sh
# Usage: reset-stanza.sh APP
# A branch replaced by its parent's data starts a new lineage: its stanza and archive queue start
# over, while it is stopped (its new WAL may reuse names its old WAL had).
set -e
cd /tmp
runuser -u postgres -- pgbackrest --stanza="$1" stop
runuser -u postgres -- pgbackrest --stanza="$1" --force stanza-delete
runuser -u postgres -- pgbackrest --stanza="$1" start
rm -rf "/var/spool/pgbackrest/archive/$1"
runuser -u postgres -- pgbackrest --stanza="$1" --no-online stanza-create
