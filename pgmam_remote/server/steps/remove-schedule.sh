#!/bin/sh
# Usage: remove-schedule.sh APP UNIT...
# Removes whatever schedule APP has: its cron file, its timers (UNIT.timer and UNIT.service) and
# its job templates.
app=$1; shift
rm -f "/etc/cron.d/pgmam-$app"
rm -rf "/var/lib/pgmam/schedules/$app"
reload=no
for u in "$@"; do
  if [ -f "/etc/systemd/system/$u.timer" ]; then
    systemctl disable --now "$u.timer" 2> /dev/null || true
    rm -f "/etc/systemd/system/$u.timer" "/etc/systemd/system/$u.service"
    reload=yes
  fi
done
if [ "$reload" = yes ]; then systemctl daemon-reload; fi
