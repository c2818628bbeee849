#!/bin/sh
# Usage: launch-job.sh JOB_DIR APP JOB INFO
# Starts one pgmam job on the server, detached from the SSH session that asked for it: JOB is
# the job's script, INFO its info file. This app's interrupted jobs are finished or undone first:
# the next job never runs on top of a half-done one.
set -e
dir=$1 app=$2
sh "$(dirname "$0")/recover-jobs.sh" "$app" >&2
mkdir -p /var/lib/pgmam/jobs
mkdir -m 0700 "$dir"
printf '%s' "$3" > "$dir/job.sh"
printf '%s' "$4" > "$dir/info"
if [ -d /run/systemd/system ]; then
  # KillMode=mixed: a stop signals the runner alone, which lets the running step finish, then
  # undoes the job. After=postgresql.service: at shutdown the job stops before the clusters do.
  systemd-run --quiet --collect --unit="pgmam-$(basename "$dir")" -p KillMode=mixed -p TimeoutStopSec=1800 \
    -p After=postgresql.service /bin/sh "$dir/job.sh" "$dir" "$app"
else
  setsid -f /bin/sh "$dir/job.sh" "$dir" "$app" < /dev/null > "$dir/runner.log" 2>&1
fi
i=0
while [ ! -s "$dir/pid" ] && [ $i -lt 100 ]; do
  sleep 0.05
  i=$((i + 1))
done
