#!/bin/sh
# Usage: remove-schedule.sh APP
# Removes whatever schedule APP has: its cron file, its timers (pgmam-schedule-APP-KIND, and the
# pgmam-backup-APP-KIND of older versions, .timer and .service) and its job templates. App names
# hold no "-", so the patterns match APP's units only.
app=$1
rm -f "/etc/cron.d/pgmam-$app"
rm -rf "/var/lib/pgmam/schedules/$app"
reload=no
for timer in "/etc/systemd/system/pgmam-schedule-$app-"*.timer "/etc/systemd/system/pgmam-backup-$app-"*.timer; do
  [ -f "$timer" ] || continue
  unit=$(basename "$timer" .timer)
  systemctl disable --now "$unit.timer" 2> /dev/null || true
  rm -f "$timer" "/etc/systemd/system/$unit.service"
  reload=yes
done
if [ "$reload" = yes ]; then systemctl daemon-reload; fi
