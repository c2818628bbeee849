#!/bin/sh
# managed by pgmam
# Usage: scheduled-run.sh APP KIND   (KIND: full, diff, incr, verify; REPO-full, REPO-diff, REPO-incr, REPO-verify)
# The one entry point of pgmam's cron lines and systemd services. It fills the run-time facts into
# the job that `inv schedule` wrote (the stamp; for a drill the newest backup and a free port,
# after checking there is room for a restored copy), then runs it in the foreground through
# pgmam's job runner, which takes the app's lock, journals, undoes on failure and writes the
# audit line. The result goes where `inv status` reads it:
#   /var/lib/pgmam/scheduled/APP: "<start epoch> <exit status> <kind> <label> <seconds>"
# Exit status 75: skipped, another job held the app (not a failure).
# cron's PATH has no sbin (runuser lives there)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
steps=$(dirname "$0")/steps
app=$1; kind=$2
templates=/var/lib/pgmam/schedules/$app
results=/var/lib/pgmam/scheduled
log=/var/log/pgmam/scheduled-$app.log
mkdir -p "$results" /var/log/pgmam /var/lib/pgmam/jobs
# one scheduled run of an app at a time: a second one waits instead of being skipped
exec 9> "$results/$app.lock"
flock 9
started=$(date +%s)
op=backup; repo=; record=$app
case $kind in
  verify) op=verify ;;
  *-verify) op=verify; repo=${kind%-verify}; record=$app@$repo ;; # a drill from off-host repo REPO
esac
backup=-; port=-; rc=1; label=-
record() {
  { echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) scheduled $kind of $app: exit $rc"; [ -n "$1" ] && echo "$1"; } >> "$log"
  printf '%s %s %s %s %s\n' "$started" "$rc" "$kind" "$label" "$(($(date +%s) - started))" >> "$results/$app"
  exit "$rc"
}
drill_failed() {
  "$steps/record-drill-failure.sh" "$record" "$backup" latest
  record "$1"
}
[ -f "$templates/$kind.job" ] || record "no scheduled $kind job for $app: run inv schedule again"
if [ "$op" = verify ]; then
  backup=$("$steps/newest-label.sh" "$app" "$repo")
  [ -n "$backup" ] || { backup=-; drill_failed "no backup to verify"; }
  label=$backup
  data=$(pg_lsclusters -h | awk -v a="$app" '$2 == a { print $6; exit }')
  live=$(pg_lsclusters -h | awk -v a="$app" '$2 == a { print $3; exit }')
  [ -n "$data" ] || drill_failed "no cluster named $app"
  # room for a restored copy (its size * 1.2 + 256 MiB, as `inv verify` checks): a drill must never
  # fill the disk the live cluster writes WAL to
  need=$(($(du -sb "$data" | cut -f1) * 120 / 100 + 268435456))
  free=$(df -B1 --output=avail "$(dirname "$data")" | tail -n 1 | tr -d ' ')
  [ "$free" -ge "$need" ] || drill_failed "not enough free space beside $data: $free bytes free, $need needed"
  port=$((30000 + live % 10000))
  while ss -Hltn 2> /dev/null | awk '{print $4}' | grep -q ":$port\$" \
    || pg_lsclusters -h | awk '{print $3}' | grep -qx "$port"; do
    port=$((port + 1))
  done
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
while ! mkdir -m 0700 "/var/lib/pgmam/jobs/$op-$app-$stamp" 2> /dev/null; do
  sleep 1
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
done
job=/var/lib/pgmam/jobs/$op-$app-$stamp
fill() {
  sed -e "s/@PGMAM_STAMP@/$stamp/g" -e "s/@PGMAM_BACKUP@/$backup/g" -e "s/@PGMAM_PORT@/$port/g" "$1"
}
fill "$templates/$kind.info" > "$job/info"
fill "$templates/$kind.job" > "$job/job.sh"
touch "$job/reported" # nobody follows it live; status reads its result
sh "$job/job.sh" "$job" "$app" > "$job/runner.log" 2>&1
result=$(sed -n 's/^[0-9.]* end \([a-z-]*\).*/\1/p' "$job/journal" | tail -n 1)
case $result in
  ok) rc=0 ;;
  locked) rc=75 ;;
  *) rc=1 ;;
esac
[ "$op" = backup ] && label=$(sed -n 's/^backup=//p' "$job/notes" 2> /dev/null | tail -n 1)
[ "$rc" = 0 ] || [ "$op" = verify ] || label=-
[ -n "$label" ] || label=-
record "$(cut -d' ' -f2- "$job/journal")"
