#!/bin/sh
# Usage: recover-restore.sh CONF APP DATA [pgbackrest target options...]
# Restores APP from an off-host repo (pgBackRest config CONF: another server's repository on a
# repository host) into the empty data dir DATA of a new cluster, with archiving off. Without a
# target, it replays all the WAL the repo has (the newest point).
set -e
conf=$1; app=$2; data=$3; shift 3
find "$data" -mindepth 1 -delete
install -d -o postgres -g postgres -m 0750 /var/log/pgbackrest /var/log/pgbackrest/recover
cd /tmp
if [ $# -gt 0 ]; then set -- --target-action=promote "$@"; fi
runuser -u postgres -- pgbackrest --config="$conf" --config-include-path=/etc/pgbackrest/conf.d --stanza="$app" \
  --pg1-path="$data" --archive-mode=off "$@" restore
