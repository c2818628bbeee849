#!/bin/sh
# Usage: newest-label.sh APP [REPO]
# Prints the label of APP's newest backup, from pgBackRest's "latest" link in the repository (no
# pgbackrest run), else from `pgbackrest info`; prints nothing when there is none. With REPO: in
# that off-host repo (asked through this server's config for it).
cd /tmp || exit
if [ -n "${2:-}" ]; then
  set -- "$1" --config="/etc/pgbackrest/pgmam/repos/$2.conf" --config-include-path=/etc/pgbackrest/conf.d
else
  readlink "/var/lib/pgbackrest/backup/$1/latest" 2> /dev/null && exit 0
fi
app=$1; shift
runuser -u postgres -- pgbackrest "$@" --stanza="$app" --output=json info 2> /dev/null \
  | grep -o '"label":"[^"]*"' | tail -n 1 | cut -d'"' -f4
