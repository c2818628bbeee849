#!/bin/sh
# Usage: archive-now.sh PORT APP
# Makes the live cluster write and archive a WAL segment now, and proves archiving works.
set -e
cd /tmp
runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p "$1" -d postgres -c 'select txid_current()' > /dev/null
runuser -u postgres -- pgbackrest --stanza="$2" check
