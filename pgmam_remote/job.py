"""Server-side jobs: a Plan rendered into a detached shell job that survives the SSH link.

The mutating phase of pitr and rollback runs on the server (``setsid``, or
``systemd-run`` where systemd is PID 1). The job takes the per-app lock, runs
each step, writes a journal, and when a step fails it runs the undo commands of
the completed steps in reverse order. The laptop only launches it and follows
the journal; if the link drops the job carries on, and running the same
command again re-attaches to it.

Journal lines: ``<epoch> <event> <details>`` with events begin, start, ok,
fail, log, note, undo, undone, undo-failed and end.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .plan import Plan
from .remote import Command, job_line, sh

STATE_DIR = "/var/lib/pgmam"
LOCK_DIR = f"{STATE_DIR}/locks"
JOBS_DIR = f"{STATE_DIR}/jobs"
RUN_DIR = f"{STATE_DIR}/run"
AUDIT_LOG = "/var/log/pgmam/audit.log"
KEEP_JOBS = 20  # finished job dirs kept per operation and app

# Is a pid a live pgmam job? (kill -0 alone is fooled by zombies and recycled pids)
ALIVE_FN = r"""
job_alive() {
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
  [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ] || return 1
  tr '\0' ' ' < "/proc/$1/cmdline" | grep -q 'pgmam' || return 1
}
"""

RUNNER = (
    r"""# pgmam job: runs steps, journals them, undoes completed steps on failure.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
JOB_DIR=$1
APP=$2
export JOB_DIR
STATE=${PGMAM_STATE_DIR:-/var/lib/pgmam}
LOCK=$STATE/locks/$APP
cd /
trap '' HUP
echo $$ > "$JOB_DIR/pid"
now() { date +%s.%N; }
journal() { printf '%s %s\n' "$(now)" "$*" >> "$JOB_DIR/journal"; }
STARTED=$(now)
FAILED=0
UNDO_FAILED=0
DONE=""
"""
    + ALIVE_FN
    + r"""
acquire() {
  mkdir -p "$STATE/locks"
  if ! mkdir "$LOCK" 2>/dev/null; then
    holder=$(tr '\n' ' ' < "$LOCK/info" 2>/dev/null)
    if job_alive "$(cat "$LOCK/pid" 2>/dev/null)"; then
      journal "end locked $holder"
      exit 75
    fi
    journal "note stale_lock=$(printf '%s' "$holder" | tr ' ' ',')"
    rm -rf "$LOCK"
    mkdir "$LOCK" || { journal "end locked"; exit 75; }
  fi
  echo $$ > "$LOCK/pid"
  cp "$JOB_DIR/info" "$LOCK/info"
  echo "$JOB_DIR" > "$LOCK/job"
}
notes() {
  grep '^pgmam-note ' "$1" 2>/dev/null | while IFS= read -r line; do
    kv=${line#pgmam-note }
    echo "$kv" >> "$JOB_DIR/notes"
    journal "note $kv"
  done
}
quote_log() {
  tail -n "$2" "$1" 2>/dev/null | while IFS= read -r line; do journal "log $line"; done
}
rollback() {
  for n in $DONE; do
    journal "undo $n"
    if sh -c "$(cat "$JOB_DIR/undo-$n")" > "$JOB_DIR/undo-$n.log" 2>&1 < /dev/null; then
      journal "undone $n"
    else
      UNDO_FAILED=1
      journal "undo-failed $n"
      quote_log "$JOB_DIR/undo-$n.log" 10
    fi
  done
}
step() {
  [ "$FAILED" = 0 ] || return 0
  n=$1; title=$2; cmd=$3; undo=$4; own=$5
  journal "start $n $title"
  if sh -c "$cmd" > "$JOB_DIR/step-$n.log" 2>&1 < /dev/null; then
    notes "$JOB_DIR/step-$n.log"
    journal "ok $n"
    if [ -n "$undo" ]; then
      printf '%s' "$undo" > "$JOB_DIR/undo-$n"
      DONE="$n $DONE"
    fi
  else
    rc=$?
    notes "$JOB_DIR/step-$n.log"
    journal "fail $n $rc"
    quote_log "$JOB_DIR/step-$n.log" 20
    FAILED=$n
    if [ "$own" = 1 ] && [ -n "$undo" ]; then
      # this step's undo also cleans up what a failed run of it left behind
      printf '%s' "$undo" > "$JOB_DIR/undo-$n"
      DONE="$n $DONE"
    fi
    rollback
  fi
}
audit() {
  log_dir=${PGMAM_LOG_DIR:-/var/log/pgmam}
  mkdir -p "$log_dir"
  down=$(sed -n 's/^down_at=//p' "$JOB_DIR/notes" 2>/dev/null | tail -n 1)
  up=$(sed -n 's/^up_at=//p' "$JOB_DIR/notes" 2>/dev/null | tail -n 1)
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
  ls -1d "${JOB_DIR%/*}/$op-$APP-"* 2>/dev/null | head -n -"""
    + str(KEEP_JOBS)
    + r""" | while IFS= read -r d; do
    if grep -q '^[0-9.]* end ' "$d/journal" 2>/dev/null; then rm -rf -- "$d"; fi
  done
}
finish() {
  if [ "$FAILED" = 0 ]; then result=ok
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
"""
)

_LAUNCH = """set -e
dir=$1; app=$2; use_systemd=$3
mkdir -p /var/lib/pgmam/jobs
mkdir -m 0700 "$dir"
printf '%s' "$4" > "$dir/job.sh"
printf '%s' "$5" > "$dir/info"
if [ "$use_systemd" = yes ]; then
  systemd-run --quiet --collect --unit="pgmam-$(basename "$dir")" /bin/sh "$dir/job.sh" "$dir" "$app"
else
  setsid -f /bin/sh "$dir/job.sh" "$dir" "$app" < /dev/null > "$dir/runner.log" 2>&1
fi
i=0
while [ ! -s "$dir/pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
"""

_FOLLOW = (
    ALIVE_FN
    + r"""
dir=$1; seen=0
while :; do
  # look for the end BEFORE counting lines: whatever is counted then includes it
  ended=no
  grep -q '^[0-9.]* end ' "$dir/journal" 2>/dev/null && ended=yes
  total=0
  [ -f "$dir/journal" ] && total=$(wc -l < "$dir/journal")
  if [ "$total" -gt "$seen" ]; then
    # head writes to the client: if the client is gone it dies of SIGPIPE, and so must we, before
    # the end is marked as seen (a re-run then shows this job's result instead of restoring again)
    tail -n +"$((seen + 1))" "$dir/journal" | head -n "$((total - seen))" || exit 1
    seen=$total
  fi
  if [ "$ended" = yes ]; then
    touch "$dir/reported"  # only reached when the client got every line (a dead client's pipe kills us first)
    exit 0
  fi
  if ! job_alive "$(cat "$dir/pid" 2>/dev/null)"; then
    sleep 0.3
    if grep -q '^[0-9.]* end ' "$dir/journal" 2>/dev/null; then continue; fi
    echo "0 lost the job stopped without finishing its journal"
    exit 3
  fi
  sleep 0.2
done
"""
)


@dataclass(frozen=True)
class JobSpec:
    """One run of a plan as a server-side job."""

    op: str
    app: str
    job_id: str  # e.g. pitr-shop-20260119T104012Z
    holder: str  # local user@host, for the lock and the audit line
    info: dict[str, str]  # op details: target, mode, ... (no spaces in values)
    plan: Plan

    @property
    def dir(self) -> str:
        return f"{JOBS_DIR}/{self.job_id}"

    def info_text(self) -> str:
        fields = {"op": self.op, "app": self.app, "who": self.holder, "job": self.job_id, **self.info}
        return "".join(f"{k}={v.replace(' ', '_')}\n" for k, v in fields.items())


def render_script(spec: JobSpec) -> str:
    """Pure: the plan as a shell job. Each step's command and undo are single quoted words."""
    lines = [RUNNER, f"journal {shlex.quote(f'begin {len(spec.plan.steps)} {spec.plan.title}')}"]
    for n, step in enumerate(spec.plan.steps, 1):
        undo = job_line(step.undo) if step.undo else ""
        own = "1" if step.undo_if_failed else "0"
        lines.append(
            f"step {n} {shlex.quote(step.title)} {shlex.quote(job_line(step.command))} {shlex.quote(undo)} {own}"
        )
    lines.append("finish")
    return "\n".join(lines) + "\n"


def launch_command(spec: JobSpec, systemd: bool) -> Command:
    return sh(
        _LAUNCH, spec.dir, spec.app, "yes" if systemd else "no", render_script(spec), spec.info_text(), timeout=60
    )


def follow_command(job_dir: str) -> Command:
    """Streams the journal from the start until the job ends (or is found dead)."""
    return sh(_FOLLOW, job_dir, timeout=None)


# -- the journal, parsed (pure) ------------------------------------------------------


@dataclass
class StepState:
    n: int
    title: str
    started: float
    ended: float | None = None
    status: str = "running"  # running | ok | failed | undone | undo-failed


@dataclass
class JobState:
    total: int = 0
    title: str = ""
    steps: dict[int, StepState] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    result: str | None = None  # ok | rolled-back | failed | rollback-failed | locked | lost
    detail: str = ""
    began: float | None = None
    ended: float | None = None

    @property
    def failed_step(self) -> StepState | None:
        return next((s for s in self.steps.values() if s.status in ("failed",)), None)

    @property
    def downtime(self) -> float | None:
        try:
            return float(self.notes["up_at"]) - float(self.notes["down_at"])
        except (KeyError, ValueError):
            return None

    @property
    def online_after(self) -> float | None:
        """Seconds from the job's start until the app accepted connections on its restored data."""
        try:
            return float(self.notes["up_at"]) - self.began  # type: ignore[operator]
        except (KeyError, ValueError, TypeError):
            return None

    @property
    def seconds(self) -> float | None:
        return self.ended - self.began if self.began is not None and self.ended is not None else None

    def apply(self, line: str) -> tuple[str, str] | None:
        """Feed one journal line; returns (event, details) or None for noise."""
        stamp, _, rest = line.partition(" ")
        event, _, details = rest.partition(" ")
        try:
            at = float(stamp)
        except ValueError:
            return None
        if self.began is None and at:
            self.began = at
        if event == "begin":
            total, _, self.title = details.partition(" ")
            self.total = int(total) if total.isdigit() else 0
        elif event == "start":
            n, _, title = details.partition(" ")
            self.steps[int(n)] = StepState(int(n), title, at)
        elif event in ("ok", "fail"):
            n = int(details.split(" ")[0])
            if n in self.steps:
                self.steps[n].ended = at
                self.steps[n].status = "ok" if event == "ok" else "failed"
        elif event in ("undone", "undo-failed"):
            n = int(details)
            if n in self.steps:
                self.steps[n].status = event
        elif event == "note":
            key, _, value = details.partition("=")
            self.notes[key] = value
        elif event == "log":
            self.logs.append(details)
        elif event == "end":
            self.result, _, self.detail = details.partition(" ")
            self.ended = at
        elif event == "lost":
            self.result, self.detail = "lost", details
        elif event != "undo":
            return None
        return event, details


def parse_info(text: str) -> dict[str, str]:
    """'op=pitr app=shop who=a@b' -> dict (values never contain spaces)."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def parse_journal(text: str) -> JobState:
    state = JobState()
    for line in text.splitlines():
        state.apply(line)
    return state
