#!/bin/sh
# Usage: follow-job.sh JOB_DIR [STEP]
# Streams a job's journal from the start until the job ends, or is found dead (exit 3). With STEP,
# it returns as soon as that step is done (exit 0, the job runs on): a job's commit point.
job_running() { [ -e "$1/running" ] && ! flock -n "$1/running" true; }
dir=$1
until=${2:-}
seen=0
while :; do
  # look for the end BEFORE counting lines: whatever is counted then includes it
  ended=no
  grep -q '^[0-9.]* end ' "$dir/journal" 2> /dev/null && ended=yes
  handed=no
  [ -n "$until" ] && grep -q "^[0-9.]* ok $until\$" "$dir/journal" 2> /dev/null && handed=yes
  total=0
  [ -f "$dir/journal" ] && total=$(wc -l < "$dir/journal")
  if [ "$total" -gt "$seen" ]; then
    # head writes to the client: if the client is gone it dies of SIGPIPE, and so must we, before
    # the end is marked as seen (a re-run then shows this job's result instead of restoring again)
    tail -n +"$((seen + 1))" "$dir/journal" | head -n "$((total - seen))" || exit 1
    seen=$total
  fi
  if [ "$ended" = yes ]; then
    touch "$dir/reported" # only reached when the client got every line (a dead client's pipe kills us first)
    exit 0
  fi
  if [ "$handed" = yes ]; then
    touch "$dir/reported" # the client saw the app back: the same command, run again, is a new one
    exit 0
  fi
  if ! job_running "$dir"; then
    sleep 0.3
    if grep -q '^[0-9.]* end ' "$dir/journal" 2> /dev/null; then continue; fi
    echo "0 lost the job stopped without finishing its journal"
    exit 3
  fi
  sleep 0.2
done
