#!/bin/sh
# Usage: write-job-template.sh DIR KIND JOB INFO
# Writes the job a scheduled run of KIND runs (DIR/KIND.job) and its info (DIR/KIND.info), with
# the slots scheduled-run.sh fills in at run time.
set -e
umask 077
mkdir -p "$1"
printf '%s' "$3" > "$1/$2.job.tmp"
printf '%s' "$4" > "$1/$2.info.tmp"
mv -f "$1/$2.job.tmp" "$1/$2.job"
mv -f "$1/$2.info.tmp" "$1/$2.info"
