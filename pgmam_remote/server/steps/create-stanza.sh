#!/bin/sh
# Usage: create-stanza.sh APP
# Creates APP's stanza in the local repo. A stanza-create cut short (a power cut after its
# archive.info, before its backup.info) leaves a stanza that pgBackRest refuses to create again
# (error 55). While it holds no backup, nothing in it can be restored: it is deleted and created
# afresh. A stanza with any backup is never touched.
set -u
cd /tmp || exit
backup=/var/lib/pgbackrest/backup/$1
out=$(runuser -u postgres -- pgbackrest --stanza="$1" stanza-create 2>&1)
rc=$?
printf '%s\n' "$out"
case $rc:$out in
    55:*"archive.info exists but backup.info is missing"*) ;;
    *) exit "$rc" ;;
esac
if [ -e "$backup/backup.info" ] || [ -e "$backup/backup.info.copy" ] ||
    find "$backup" -mindepth 1 -maxdepth 1 -name '[0-9]*-[0-9]*F*' | grep -q .; then
    echo "pgmam: stanza $1 holds backups: it is left as it is" >&2
    exit "$rc"
fi
echo "pgmam: stanza $1 was cut short before its first backup: creating it again"
runuser -u postgres -- pgbackrest --stanza="$1" stop
runuser -u postgres -- pgbackrest --stanza="$1" --force stanza-delete
deleted=$?
runuser -u postgres -- pgbackrest --stanza="$1" start
[ "$deleted" -eq 0 ] || exit "$deleted"
exec runuser -u postgres -- pgbackrest --stanza="$1" stanza-create
