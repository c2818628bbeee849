#!/bin/sh
# Usage: delete-stanza.sh APP
# Deletes APP's stanza and its backups (the undo of creating a new app's stanza).
cd /tmp || exit
runuser -u postgres -- pgbackrest --stanza="$1" stop
exec runuser -u postgres -- pgbackrest --stanza="$1" --force stanza-delete
