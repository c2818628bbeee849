#!/bin/sh
# Usage: enable-watchdog.sh SECONDS
# Runs the watchdog every SECONDS (at least 60): a systemd timer where systemd runs, else a cron
# line (every SECONDS rounded up to whole minutes). Its config (/etc/pgmam/watchdog.json) is
# written before this step.
set -eu
case $1 in '' | *[!0-9]*) echo "enable-watchdog.sh: SECONDS must be a number" >&2; exit 2 ;; esac
[ "$1" -ge 60 ] || { echo "enable-watchdog.sh: SECONDS must be at least 60" >&2; exit 2; }
code=$(dirname "$(dirname "$0")")
put() { # put FILE: stdin into FILE, atomically, when it differs
  cat > "$1.pgmam-tmp"
  if cmp -s "$1.pgmam-tmp" "$1"; then rm -f "$1.pgmam-tmp"; return 1; fi
  mv -f "$1.pgmam-tmp" "$1"
}
if [ -d /run/systemd/system ]; then
  changed=no
  put /etc/systemd/system/pgmam-watchdog.service < "$code/units/pgmam-watchdog.service" && changed=yes
  put /etc/systemd/system/pgmam-watchdog.timer << UNIT && changed=yes
# managed by pgmam
[Unit]
Description=pgmam watchdog, every $1 s

[Timer]
OnActiveSec=10s
OnBootSec=2min
OnUnitActiveSec=$1s
AccuracySec=5s

[Install]
WantedBy=timers.target
UNIT
  [ "$changed" = no ] || systemctl daemon-reload
  systemctl enable --quiet pgmam-watchdog.timer
  if [ "$changed" = yes ]; then systemctl restart pgmam-watchdog.timer; else systemctl start pgmam-watchdog.timer; fi
  rm -f /etc/cron.d/pgmam-watchdog
  exit 0
fi
minutes=$((($1 + 59) / 60))
put /etc/cron.d/pgmam-watchdog << CRON || true
# managed by pgmam
*/$minutes * * * * root /bin/sh /var/lib/pgmam/current/watchdog.sh run > /dev/null 2>&1
CRON
