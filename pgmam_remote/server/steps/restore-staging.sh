#!/bin/sh
# Usage: restore-staging.sh APP DIR BACKUP RUN_DIR PORT CONF [pgbackrest options...]
# Restores APP's backup into DIR (staging or drill copy) and writes the config of its temporary
# instance: the app's config as it was at that backup, plus pgmam's own safe settings. The
# options go to pgbackrest restore: the target, and for a backup in an off-host repo the config
# that reads it. RUN_DIR/started records when this began (a drill's duration counts from it).
set -e
app=$1; staging=$2; backup=$3; run=$4; port=$5; conf=$6; shift 6
install -d -o postgres -g postgres -m 0700 "$run" "$staging"
rm -rf "$run/staging.log" "$run/config"
date +%s > "$run/started"
cd /tmp
# its own spool: a restore empties the stanza's spool dir, where the live app's archiving queue lives
runuser -u postgres -- pgbackrest --stanza="$app" --pg1-path="$staging" --set="$backup" --spool-path="$run/spool" \
  --target-action=promote "$@" restore
# the config as it was at that backup: its snapshot in the local repo, else the copy the backup
# carries (every off-host backup does: config-into-data.sh), else the live one
snapshot="/var/lib/pgbackrest/pgmam-config/$app/$backup.tar.gz"
[ -f "$snapshot" ] || snapshot="$staging/pgmam-config.tar.gz"
if [ -f "$snapshot" ]; then
  install -d -o postgres -g postgres -m 0700 "$run/config"
  tar -xzf "$snapshot" -C "$run/config"
  chown -R postgres:postgres "$run/config"
  conf="$run/config/$app/postgresql.conf"
  # its pg_hba.conf and pg_ident.conf too: on another server (a drill there) the app has none
  files="hba_file = '$run/config/$app/pg_hba.conf'
ident_file = '$run/config/$app/pg_ident.conf'"
  echo "pgmam-note config=$snapshot"
fi
cat > "$staging/postgresql.conf" << PGMAM_CONF
# pgmam staging instance: temporary and local only; removed before the swap
include = '$conf'
${files:-}
data_directory = '$staging'
external_pid_file = '$run/staging.pid'
port = $port
listen_addresses = ''
unix_socket_directories = '$run'
cluster_name = '$app-staging'
archive_mode = off
# its own safe settings, whatever the app's: messages in C to a log pgmam chooses, and never a
# second copy of the app's memory
lc_messages = 'C'
logging_collector = off
log_destination = 'stderr'
shared_buffers = '128MB'
huge_pages = off
PGMAM_CONF
chown postgres:postgres "$staging/postgresql.conf"
