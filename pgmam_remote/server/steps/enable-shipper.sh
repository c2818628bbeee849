#!/bin/sh
# Usage: enable-shipper.sh
# Starts the WAL shipper (ship-wal.sh), which copies each app's archived WAL to its off-host repos:
# a systemd service where systemd runs, else a cron line that runs it for a minute, every minute.
set -e
code=$(dirname "$(dirname "$0")")
if [ -d /run/systemd/system ]; then
  if ! cmp -s "$code/units/pgmam-ship.service" /etc/systemd/system/pgmam-ship.service; then
    cp "$code/units/pgmam-ship.service" /etc/systemd/system/pgmam-ship.service.pgmam-tmp
    mv -f /etc/systemd/system/pgmam-ship.service.pgmam-tmp /etc/systemd/system/pgmam-ship.service
    systemctl daemon-reload
    systemctl try-restart pgmam-ship.service
  fi
  exec systemctl enable --now --quiet pgmam-ship.service
fi
cp "$code/units/pgmam-ship.cron" /etc/cron.d/pgmam-ship.pgmam-tmp
mv -f /etc/cron.d/pgmam-ship.pgmam-tmp /etc/cron.d/pgmam-ship
