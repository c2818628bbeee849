#!/bin/sh
# Usage: add-drill-record.sh RECORD LINE
# Appends LINE, the result of a restore drill that ran on another server (`inv verify --repo
# --on`), to /var/lib/pgmam/verify/RECORD on the app's own server, where `inv status` reads it.
# LINE is drill.sh's record: "<epoch> ok|failed <backup> <tables> <rows> <amcheck> <target> ..."
set -e
printf '%s\n' "$2" | grep -Eq '^[0-9]+ (ok|failed) [^ ]+( [^ ]+){3,6}$' || { echo "not a drill record: $2"; exit 1; }
mkdir -p /var/lib/pgmam/verify
printf '%s\n' "$2" >> "/var/lib/pgmam/verify/$1"
