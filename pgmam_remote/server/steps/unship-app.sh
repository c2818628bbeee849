#!/bin/sh
# Usage: unship-app.sh REPO APP
# The WAL shipper stops copying APP's WAL to off-host repo REPO, and forgets what it shipped.
exec rm -rf -- "/var/lib/pgmam/ship/$1/$2"
