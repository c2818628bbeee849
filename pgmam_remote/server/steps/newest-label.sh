#!/bin/sh
# Usage: newest-label.sh APP
# Prints the label of APP's newest backup, from pgBackRest's "latest" link in the repository (no
# pgbackrest run), else from `pgbackrest info`; prints nothing when there is none.
cd /tmp || exit
readlink "/var/lib/pgbackrest/backup/$1/latest" 2> /dev/null && exit 0
runuser -u postgres -- pgbackrest --stanza="$1" --output=json info 2> /dev/null \
  | grep -o '"label":"[^"]*"' | tail -n 1 | cut -d'"' -f4
