#!/bin/sh
# Usage: write-file.sh PATH OWNER MODE [CONTENT]
# Writes CONTENT to PATH atomically (a temp file, then a rename), with OWNER and MODE. Without
# CONTENT, what arrives on stdin: a secret never travels in a command line.
set -e
mkdir -p "$(dirname "$1")"
umask 077
tmp="$1.pgmam-tmp"
if [ $# -ge 4 ]; then printf '%s' "$4" > "$tmp"; else cat > "$tmp"; fi
chown "$2" "$tmp"
chmod "$3" "$tmp"
mv -f "$tmp" "$1"
