# shellcheck shell=sh
# pgmam job runner: the head of every job script. job.py appends one `step` line per step of the
# plan, then `finish`. Usage: sh job.sh JOB_DIR APP [recover]
#
# Runs the steps in order and journals them (<epoch> <event> <details>); when a step fails, or the
# job is asked to stop (SIGTERM), it undoes the completed steps in reverse order. With `recover`,
# after a crash, a kill or a power cut interrupted a run (see recover-jobs), it runs no step: it
# undoes what that run had done, unless the run had passed its commit point (the app already runs
# on its new data), and releases the app. Past its commit point a job is never undone: a step that
# fails there (or a stop) ends it as `incomplete`, and status says what is missing.
#
# Locks are flock(1) locks the kernel releases when the holder dies, however it dies:
# JOB_DIR/running is held for the job's whole life, STATE/locks/APP.lock while it owns the app.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
JOB_DIR=$1
APP=$2
MODE=${3:-run}
export JOB_DIR
STATE=${PGMAM_STATE_DIR:-/var/lib/pgmam}
LOCK=$STATE/locks/$APP
KEEP_JOBS=20 # finished job dirs kept per operation and app
cd /
trap '' HUP
now() { date +%s.%N; }
journal() { printf '%s %s\n' "$(now)" "$*" >> "$JOB_DIR/journal"; }
STARTED=$(now)
FAILED=0
UNDO_FAILED=0
DONE=""
COMMITTED=0
STOPPED=""
# Asked to stop (systemctl stop, shutdown): the step that runs finishes, then everything is undone.
trap 'STOPPED=TERM' TERM
trap 'STOPPED=INT' INT

acquire() {
  mkdir -p "$STATE/locks"
  exec 7> "$JOB_DIR/running"
  flock 7
  echo $$ > "$JOB_DIR/pid" # the launcher waits for this: the job runs (and holds JOB_DIR/running)
  if [ "$MODE" = recover ] && grep -q '^[0-9.]* end ' "$JOB_DIR/journal" 2> /dev/null; then
    exit 0 # another recovery got here first
  fi
  exec 8> "$LOCK.lock"
  if ! flock -n 8; then
    journal "end locked $(tr '\n' ' ' < "$LOCK/info" 2> /dev/null)"
    exit 75
  fi
  if [ -f "$LOCK/info" ]; then
    journal "note stale_lock=$(tr '\n' ',' < "$LOCK/info" | sed 's/,$//; s/ /_/g')"
  fi
  rm -rf "$LOCK"
  mkdir -p "$LOCK"
  echo $$ > "$LOCK/pid"
  cp "$JOB_DIR/info" "$LOCK/info"
  echo "$JOB_DIR" > "$LOCK/job"
  if [ "$MODE" = recover ]; then
    journal "note recovering=$(awk '$2 == "start" { n = $3 } END { print n + 0 }' "$JOB_DIR/journal")"
    PGMAM_RECOVERING=1 # the undo scripts may act differently (see MOVE_BACK)
    export PGMAM_RECOVERING
  fi
}
notes() {
  grep '^pgmam-note ' "$1" 2> /dev/null | while IFS= read -r line; do
    kv=${line#pgmam-note }
    echo "$kv" >> "$JOB_DIR/notes"
    journal "note $kv"
  done
}
quote_log() {
  tail -n "$2" "$1" 2> /dev/null | while IFS= read -r line; do journal "log $line"; done
}
# $1 deadline in seconds, $2 the command (a quoted shell word); the job's lock fds stay here
run_bounded() {
  timeout --kill-after=30 "$1" sh -c "$2" 7>&- 8>&- 9>&- < /dev/null
}
rollback() {
  for n in $DONE; do
    journal "undo $n"
    if run_bounded 1800 "$(cat "$JOB_DIR/undo-$n")" > "$JOB_DIR/undo-$n.log" 2>&1; then
      journal "undone $n"
    else
      UNDO_FAILED=1
      journal "undo-failed $n"
      quote_log "$JOB_DIR/undo-$n.log" 10
    fi
  done
}
# step N TITLE COMMAND UNDO OWN COMMIT DEADLINE
#   OWN=1: the undo also cleans up what a failed (or interrupted) run of this very step left
#   COMMIT=1: once this step is done the app runs on its new data, and its client returns; nothing
#   undoes the job after it
step() {
  n=$1 title=$2 cmd=$3 undo=$4 own=$5 commit=$6 deadline=$7
  if [ "$MODE" = recover ]; then
    remember "$n" "$undo" "$own" "$commit"
    return 0
  fi
  [ "$FAILED" = 0 ] || return 0
  journal "start $n $title"
  [ -z "$undo" ] || printf '%s' "$undo" > "$JOB_DIR/undo-$n"
  if run_bounded "$deadline" "$cmd" > "$JOB_DIR/step-$n.log" 2>&1; then
    notes "$JOB_DIR/step-$n.log"
    journal "ok $n"
    [ -z "$undo" ] || DONE="$n $DONE"
    if [ "$commit" = 1 ]; then
      COMMITTED=1
      : > "$JOB_DIR/committed" # the app's next job waits for this one instead of being refused
    fi
  else
    rc=$?
    notes "$JOB_DIR/step-$n.log"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then journal "note deadline=step_${n}_${deadline}s"; fi
    journal "fail $n $rc"
    quote_log "$JOB_DIR/step-$n.log" 20
    FAILED=$n
    # past the commit point the app runs on its new data (its client was told so): it is kept, and
    # status says what did not run
    [ "$COMMITTED" = 0 ] || return 0
    # this step's undo also cleans up what a failed run of it left behind
    [ "$own" = 0 ] || [ -z "$undo" ] || DONE="$n $DONE"
    rollback
    return 0
  fi
  if [ -n "$STOPPED" ]; then
    journal "note stopped_by=SIG$STOPPED"
    FAILED=$n
    [ "$COMMITTED" = 1 ] || rollback
  fi
}
# recovery: what the interrupted run had done, read back from its journal
remember() {
  if grep -q "^[0-9.]* ok $1\$" "$JOB_DIR/journal"; then
    [ -z "$2" ] || DONE="$1 $DONE"
    [ "$4" = 0 ] || COMMITTED=1
  elif [ "$3" = 1 ] && [ -n "$2" ] && grep -q "^[0-9.]* start $1 " "$JOB_DIR/journal"; then
    DONE="$1 $DONE" # it was running when the job died: clean up its partial work
  else
    return 0
  fi
  [ -z "$2" ] || printf '%s' "$2" > "$JOB_DIR/undo-$1"
}
audit() {
  log_dir=${PGMAM_LOG_DIR:-/var/log/pgmam}
  mkdir -p "$log_dir"
  down=$(sed -n 's/^down_at=//p' "$JOB_DIR/notes" 2> /dev/null | tail -n 1)
  up=$(sed -n 's/^up_at=//p' "$JOB_DIR/notes" 2> /dev/null | tail -n 1)
  downtime=-
  if [ -n "$down" ] && [ -n "$up" ]; then
    downtime=$(awk -v a="$down" -v b="$up" 'BEGIN { printf "%.2fs", b - a }')
  fi
  duration=$(awk -v a="$STARTED" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }')
  printf '%s %s result=%s duration=%s downtime=%s dir=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$(tr '\n' ' ' < "$JOB_DIR/info" | sed 's/ $//')" "$1" "$duration" "$downtime" "$JOB_DIR" \
    >> "$log_dir/audit.log"
}
prune() {
  # keep the newest finished jobs of this op and app (the audit log keeps a line for every one)
  op=$(sed -n 's/^op=//p' "$JOB_DIR/info" | head -n 1)
  find "${JOB_DIR%/*}" -mindepth 1 -maxdepth 1 -type d -name "$op-$APP-*" | sort | head -n -"$KEEP_JOBS" |
    while IFS= read -r d; do
      if grep -q '^[0-9.]* end ' "$d/journal" 2> /dev/null; then rm -rf -- "$d"; fi
    done
}
# recovery of a job that had stopped the app: make sure it is stopped before its dirs move back
# (without systemd, boot may have started it already); undoing the stop starts it again
stop_app_if_running() {
  grep -q '^down_at=' "$JOB_DIR/notes" 2> /dev/null || return 0
  version=$(pg_lsclusters -h 2> /dev/null | awk -v a="$APP" '$2 == a { print $1; exit }')
  if [ -n "$version" ] && pg_ctlcluster "$version" "$APP" status > /dev/null 2>&1; then
    journal "note stopped_for_recovery=$APP"
    timeout 600 pg_ctlcluster --mode fast "$version" "$APP" stop 7>&- 8>&- 9>&- > /dev/null 2>&1 || true
  fi
}
finish() {
  if [ "$MODE" = recover ]; then
    if [ "$COMMITTED" = 1 ]; then
      result=interrupted # the app has its new data; the steps after the commit point did not run
    else
      stop_app_if_running
      rollback
      if [ "$UNDO_FAILED" = 1 ]; then result=recovery-failed; else result=recovered; fi
    fi
  elif [ "$FAILED" = 0 ]; then result=ok
  elif [ "$COMMITTED" = 1 ]; then result=incomplete # kept on its new data; a step after the commit point did not finish
  elif [ "$UNDO_FAILED" = 1 ]; then result=rollback-failed
  elif [ -n "$DONE" ]; then result=rolled-back
  else result=failed
  fi
  audit "$result"
  rm -rf "$LOCK"
  journal "end $result"
  prune
}
acquire
