#!/bin/sh
# Usage: watchdog.sh run|test
# The watchdog (pgmam_remote/watchdog.py, shipped with this code under py/): run = look at every
# app, alert on a change, write the metrics; test = send a test message through each channel.
# The server's own python3 runs it, with the standard library alone (-E: no PYTHON* variables,
# -s: no user site).
cd "$(dirname "$0")/py" || exit 3
if ! command -v python3 > /dev/null 2>&1; then
  echo "pgmam watchdog: python3 is not installed (apt-get install python3)" >&2
  exit 3
fi
# one run at a time (from cron, a slow run could meet the next one)
exec flock -w 120 /var/lib/pgmam/watchdog.lock python3 -E -s -m pgmam_remote.watchdog "$@"
