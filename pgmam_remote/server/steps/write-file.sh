#!/bin/sh
# Usage: write-file.sh PATH OWNER MODE CONTENT
# Writes CONTENT to PATH atomically (a temp file, then a rename), with OWNER and MODE.
set -e
mkdir -p "$(dirname "$1")"
umask 077
tmp="$1.pgmam-tmp"
printf '%s' "$4" > "$tmp"
chown "$2" "$tmp"
chmod "$3" "$tmp"
mv -f "$tmp" "$1"
