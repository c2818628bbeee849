#!/bin/sh
# Usage: disable-watchdog.sh METRICS_DIR
# Stops the watchdog and removes its timer (or cron line), its config, its state and its metrics
# file (METRICS_DIR/pgmam.prom). Its log in /var/log/pgmam stays.
set -eu
if [ -f /etc/systemd/system/pgmam-watchdog.timer ]; then
  systemctl disable --now --quiet pgmam-watchdog.timer 2> /dev/null || true
  rm -f /etc/systemd/system/pgmam-watchdog.timer /etc/systemd/system/pgmam-watchdog.service
  systemctl daemon-reload
fi
rm -f /etc/cron.d/pgmam-watchdog /etc/pgmam/watchdog.json
rm -rf /var/lib/pgmam/watchdog /var/lib/pgmam/watchdog.lock
rm -f "$1/pgmam.prom"
