#!/bin/sh
# Usage: apply-snapshot.sh SOURCE NEW VERSION PORT BACKUP|TARBALL
# A new cluster (pitr --into, branch, recover) gets SOURCE's config as it was at BACKUP (or as
# TARBALL, a path, holds it): its postgresql.conf with paths, port and name rewritten, pg_hba and
# pg_ident, and conf.d (but the archiving file: the new app gets one for its own stanza).
set -e
src=$1; new=$2; v=$3; port=$4; backup=$5
case $backup in
  /*) snap=$backup ;;
  *) snap=/var/lib/pgbackrest/pgmam-config/$src/$backup.tar.gz ;;
esac
if [ ! -f "$snap" ]; then
  echo "no config snapshot for backup $backup: the new app keeps default settings"
  exit 0
fi
tmp=$(mktemp -d)
tar -xzf "$snap" -C "$tmp"
dst=/etc/postgresql/$v/$new
sed -e "s|/$v/$src\([/']\)|/$v/$new\1|g" -e "s|$v-$src\.pid|$v-$new.pid|g" \
  -e "s|^port = [0-9]*|port = $port|" -e "s|^cluster_name = .*|cluster_name = '$v/$new'|" \
  "$tmp/$src/postgresql.conf" > "$dst/postgresql.conf"
cp "$tmp/$src/pg_hba.conf" "$tmp/$src/pg_ident.conf" "$dst/"
for f in "$tmp/$src"/conf.d/*.conf; do
  if [ -f "$f" ] && [ "$(basename "$f")" != pgmam.conf ]; then cp "$f" "$dst/conf.d/"; fi
done
chown -R postgres:postgres "$dst"
rm -rf "$tmp"
echo "pgmam-note config=$snap"
