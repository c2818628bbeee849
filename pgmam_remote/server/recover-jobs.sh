#!/bin/sh
# pgmam: finish or undo the jobs that a crash, a kill or a power cut interrupted.
# Usage: recover-jobs [APP]   (every app when none is given)
# Runs at boot before any cluster starts (pgmam-recover.service; cron's @reboot without systemd),
# and before each new job of an app. A job whose runner still lives (it holds JOB_DIR/running) is
# not interrupted and is left alone (one past its commit point is waited for: the next job of its
# app comes after it; at boot none is alive); the others are handed back to their own script in recover
# mode, which undoes what they did (see job-runner.sh).
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
jobs=${PGMAM_STATE_DIR:-/var/lib/pgmam}/jobs
rc=0
for dir in "$jobs"/*; do
  if [ ! -f "$dir/job.sh" ] || [ ! -f "$dir/info" ]; then continue; fi
  grep -q '^[0-9.]* end ' "$dir/journal" 2> /dev/null && continue
  app=$(sed -n 's/^app=//p' "$dir/info" | head -n 1)
  [ -z "${1:-}" ] || [ "$app" = "$1" ] || continue
  if [ -e "$dir/running" ] && ! flock -n "$dir/running" true; then
    # past its commit point the app already runs on its new data and the job only finishes its
    # last steps (a backup): the app's next job waits for it rather than being refused
    if [ -f "$dir/committed" ]; then
      echo "pgmam: waiting for $dir to finish its last steps"
      flock "$dir/running" true
    fi
    continue
  fi
  echo "pgmam: recovering the interrupted job $dir"
  sh "$dir/job.sh" "$dir" "$app" recover || rc=1
done
exit "$rc"
