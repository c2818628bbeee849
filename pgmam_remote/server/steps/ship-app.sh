#!/bin/sh
# Usage: ship-app.sh REPO APP
# From now on the WAL shipper copies APP's archived WAL to off-host repo REPO (see ship-wal.sh),
# and runs: the shipper is started if it was not.
set -e
install -d -o postgres -g postgres -m 0750 /var/lib/pgmam/ship "/var/lib/pgmam/ship/$1" "/var/lib/pgmam/ship/$1/$2"
install -d -o postgres -g postgres -m 0750 /var/log/pgbackrest "/var/log/pgbackrest/repos" "/var/log/pgbackrest/repos/$1"
exec "$(dirname "$0")/enable-shipper.sh"
