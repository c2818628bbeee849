#!/bin/sh
# Usage: backup.sh APP VERSION TYPE [check]
# Takes a backup of TYPE (full, diff, incr), then stores the cluster's config beside it. check:
# prove WAL archiving works first. incr is safe after a restore or rollback: pgBackRest copies
# every file whose size or timestamp differs from the prior backup, and turns on checksums when
# timestamps go backwards. With no prior full backup (a new app) it takes a full one.
set -e
cd /tmp
[ "${4:-}" != check ] || runuser -u postgres -- pgbackrest --stanza="$1" check
runuser -u postgres -- pgbackrest --stanza="$1" --type="$3" backup
exec "$(dirname "$0")/config-snapshot.sh" "$1" "$2"
