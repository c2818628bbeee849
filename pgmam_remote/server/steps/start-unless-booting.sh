#!/bin/sh
# Usage: start-unless-booting.sh VERSION APP
# The undo of stopping a cluster. At boot (pgmam-recover.service) the clusters wait for the
# recovery, and systemd starts them right after it: asking for a start then would wait forever.
# While the server shuts down, systemd refuses to start anything; the next boot starts it.
if [ -n "${PGMAM_AT_BOOT:-}" ]; then
  echo "at boot: systemd starts $1/$2 next"
  exit 0
fi
if [ "$(systemctl is-system-running 2> /dev/null)" = stopping ]; then
  echo "shutting down: the next boot starts $1/$2"
  exit 0
fi
exec pg_ctlcluster "$1" "$2" start
