#!/bin/sh
# Usage: record-drill-failure.sh RECORD BACKUP TARGET   (RECORD: APP, or APP@REPO; see drill.sh)
# Records a failed restore drill where `inv status` reads it. A drill that a crash interrupted
# proved nothing either way: it is not recorded as failed.
[ -z "${PGMAM_RECOVERING:-}" ] || exit 0
mkdir -p /var/lib/pgmam/verify
printf '%s failed %s - - - %s\n' "$(date +%s)" "$2" "$3" >> "/var/lib/pgmam/verify/$1"
