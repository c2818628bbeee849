#!/bin/sh
# Usage: move.sh FROM TO
# Renames a data dir; never onto something that exists.
if [ -e "$2" ]; then
  echo "$2 already exists"
  exit 1
fi
exec mv -T "$1" "$2"
