#!/bin/sh
# Usage: move-back.sh FROM TO [keep|discard]
# The undo of a move: put the dir back (or aside) if it had moved; nothing if the move never
# happened (a crash can come just before or just after a rename). discard: a restored copy,
# removed instead of kept aside when a crash is being recovered: nobody will look at it, and the
# backups can make it again.
[ -e "$1" ] || exit 0
if [ "${3:-}" = discard ] && [ -n "${PGMAM_RECOVERING:-}" ]; then exec rm -rf -- "$1"; fi
if [ -e "$2" ]; then
  echo "$2 already exists"
  exit 1
fi
exec mv -T "$1" "$2"
