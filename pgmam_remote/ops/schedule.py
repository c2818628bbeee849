"""schedule: scheduled backups per app, as systemd timers (systemd is PID 1) or /etc/cron.d entries.

A schedule is a small calendar language that both can express (parsed and rendered here,
purely): 'hourly', 'daily', 'weekly', 'monthly', or '[DAYS ]HH:MM' where DAYS is a day name,
a range ('Mon..Fri') or a list ('Sat,Sun'). Every scheduled run goes through one script on the
server that records its result where `inv status` reads it, so a failing scheduled backup turns
status red.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import configs
from ..errors import Refusal
from ..facts import ClusterFacts, ServerFacts
from ..job import JobSpec, render_script
from ..plan import Plan, Step
from ..remote import Command, sh
from . import backup, restore, verify

BIN_DIR = "/var/lib/pgmam/bin"
RUNNER = f"{BIN_DIR}/scheduled-run"
JOBS_DIR = "/var/lib/pgmam/schedules"  # per app: <kind>.job and <kind>.info, templates of a job
RESULTS_DIR = "/var/lib/pgmam/scheduled"
KINDS = ("full", "diff", "incr", "verify")
DEFAULTS = {"full": "Sun 03:00", "diff": "Mon..Sat 03:00"}
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CALENDAR_HINT = "use 'hourly', 'daily', 'weekly', 'monthly', 'HH:MM', 'Sun 03:00', 'Mon..Fri 02:30' or 'Sat,Sun 04:00'"

# The one entry point of cron lines and systemd services: `scheduled-run APP KIND`. It fills the
# run-time facts into the job `inv schedule` rendered (the stamp; for a drill the newest backup and
# a free port, after checking there is room for a restored copy), then runs it in the foreground
# through pgmam's job runner, which takes the app's lock, journals, undoes on failure and writes
# the audit line. The result goes where `inv status` reads it.
RUNNER_SCRIPT = rf"""#!/bin/sh
{configs.MARKER}
# Runs one scheduled job of an app (a backup or a restore drill) and records the result for
# `inv status`: "<start epoch> <exit status> <kind> <label> <seconds>" (75: skipped, the app was busy).
# cron's PATH has no sbin (runuser lives there)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
app=$1; kind=$2
templates={JOBS_DIR}/$app
results={RESULTS_DIR}
log=/var/log/pgmam/scheduled-$app.log
mkdir -p "$results" /var/log/pgmam /var/lib/pgmam/jobs
# one scheduled run of an app at a time: a second one waits instead of being skipped
exec 9> "$results/$app.lock"
flock 9
started=$(date +%s)
op=backup; [ "$kind" = verify ] && op=verify
backup=-; port=-; rc=1; label=-
record() {{
  {{ echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) scheduled $kind of $app: exit $rc"; [ -n "$1" ] && echo "$1"; }} >> "$log"
  printf '%s %s %s %s %s\n' "$started" "$rc" "$kind" "$label" "$(( $(date +%s) - started ))" >> "$results/$app"
  exit "$rc"
}}
record_drill_failure() {{
{verify.RECORD_FAILURE}}}
drill_failed() {{
  record_drill_failure "$app" "$backup" latest
  record "$1"
}}
[ -f "$templates/$kind.job" ] || record "no scheduled $kind job for $app: run inv schedule again"
if [ "$op" = verify ]; then
  backup={configs.NEWEST_LABEL}
  [ -n "$backup" ] || {{ backup=-; drill_failed "no backup to verify"; }}
  label=$backup
  data=$(pg_lsclusters -h | awk -v a="$app" '$2 == a {{ print $6; exit }}')
  live=$(pg_lsclusters -h | awk -v a="$app" '$2 == a {{ print $3; exit }}')
  [ -n "$data" ] || drill_failed "no cluster named $app"
  # room for a restored copy: a drill must never fill the disk the live cluster writes WAL to
  need=$(( $(du -sb "$data" | cut -f1) * {int(restore.SPACE_MARGIN * 100)} / 100 + {restore.SPACE_SLACK_BYTES} ))
  free=$(df -B1 --output=avail "$(dirname "$data")" | tail -n 1 | tr -d ' ')
  [ "$free" -ge "$need" ] || drill_failed "not enough free space beside $data: $free bytes free, $need needed"
  port=$(( 30000 + live % 10000 ))
  while ss -Hltn 2> /dev/null | awk '{{print $4}}' | grep -q ":$port\$" \
    || pg_lsclusters -h | awk '{{print $3}}' | grep -qx "$port"; do
    port=$(( port + 1 ))
  done
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
while ! mkdir -m 0700 "/var/lib/pgmam/jobs/$op-$app-$stamp" 2> /dev/null; do
  sleep 1; stamp=$(date -u +%Y%m%dT%H%M%SZ)
done
job=/var/lib/pgmam/jobs/$op-$app-$stamp
fill() {{
  sed -e "s/{verify.STAMP_SLOT}/$stamp/g" -e "s/{verify.BACKUP_SLOT}/$backup/g" -e "s/{verify.PORT_SLOT}/$port/g" "$1"
}}
fill "$templates/$kind.info" > "$job/info"
fill "$templates/$kind.job" > "$job/job.sh"
touch "$job/reported"  # nobody follows it live; status reads its result
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
"""


@dataclass(frozen=True)
class Calendar:
    """A time of day on some days of the week (None = every day); minute-only means hourly."""

    text: str
    minute: int
    hour: int | None  # None: every hour
    days: tuple[int, ...] | None  # 0 = Monday; None: every day
    monthday: int | None = None

    def systemd(self) -> str:
        days = ",".join(DAYS[d] for d in self.days) + " " if self.days else ""
        day = f"*-*-{self.monthday:02d}" if self.monthday else "*-*-*"
        hour = "*" if self.hour is None else f"{self.hour:02d}"
        return f"{days}{day} {hour}:{self.minute:02d}:00"

    def cron(self) -> str:
        days = ",".join(str((d + 1) % 7) for d in self.days) if self.days else "*"
        hour = "*" if self.hour is None else str(self.hour)
        return f"{self.minute} {hour} {self.monthday or '*'} * {days}"

    def next_after(self, moment: datetime) -> datetime:
        """The next run strictly after ``moment`` (same time zone as the server's clock)."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(60 * 24 * 32):
            if (
                candidate.minute == self.minute
                and (self.hour is None or candidate.hour == self.hour)
                and (self.days is None or candidate.weekday() in self.days)
                and (self.monthday is None or candidate.day == self.monthday)
            ):
                return candidate
            candidate += timedelta(minutes=1)
        raise ValueError("no run within a month")


def next_run(calendar: Calendar, facts: ServerFacts) -> datetime:
    """The next run in UTC: cron and systemd read calendars in the server's local time."""
    offset = timedelta(minutes=facts.utc_offset_minutes)
    return calendar.next_after(facts.now + offset) - offset


def parse_calendar(text: str) -> Calendar:
    """Pure: the calendar language above -> Calendar, or a Refusal with the forms that work."""
    raw = " ".join((text or "").split())
    keywords = {
        "hourly": Calendar(raw, 0, None, None),
        "daily": Calendar(raw, 0, 0, None),
        "weekly": Calendar(raw, 0, 0, (0,)),
        "monthly": Calendar(raw, 0, 0, None, 1),
    }
    if raw.lower() in keywords:
        return keywords[raw.lower()]
    found = re.fullmatch(r"(?:(?P<days>[A-Za-z.,]+) )?(?P<h>\d{1,2}):(?P<m>\d{2})", raw)
    if not found or int(found["h"]) > 23 or int(found["m"]) > 59:
        raise Refusal(f"schedule {text!r} is not understood", hint=CALENDAR_HINT)
    days = _days(found["days"], text) if found["days"] else None
    return Calendar(raw, int(found["m"]), int(found["h"]), days)


def _days(spec: str, text: str) -> tuple[int, ...]:
    names = {d.lower(): i for i, d in enumerate(DAYS)}
    chosen: set[int] = set()
    for part in spec.split(","):
        first, sep, last = part.partition("..")
        if first.lower() not in names or (sep and last.lower() not in names):
            raise Refusal(f"schedule {text!r}: {part!r} is not a day or a day range", hint=CALENDAR_HINT)
        a, b = names[first.lower()], names[(last or first).lower()]
        chosen.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(chosen))


# -- the plan (pure) ------------------------------------------------------------------------


def cron_path(app: str) -> str:
    return f"/etc/cron.d/pgmam-{app}"


def unit_name(app: str, kind: str) -> str:
    return f"pgmam-schedule-{app}-{kind}"


# $1 app; then the unit names. Removes whatever schedule an app has, cron or systemd.
_REMOVE = f"""rm -f "/etc/cron.d/pgmam-$1"
rm -rf "{JOBS_DIR}/$1"
shift
reload=no
for u in "$@"; do
  if [ -f "/etc/systemd/system/$u.timer" ]; then
    systemctl disable --now "$u.timer" 2> /dev/null || true
    rm -f "/etc/systemd/system/$u.timer" "/etc/systemd/system/$u.service"
    reload=yes
  fi
done
if [ "$reload" = yes ]; then systemctl daemon-reload; fi
"""


# $1 dir, $2 kind, $3 the job's script, $4 its info (both with the slots the runner fills in)
_WRITE_JOB = """set -e
umask 077
mkdir -p "$1"
printf '%s' "$3" > "$1/$2.job.tmp"
printf '%s' "$4" > "$1/$2.info.tmp"
mv -f "$1/$2.job.tmp" "$1/$2.job"
mv -f "$1/$2.info.tmp" "$1/$2.info"
"""


def remove_command(app: str) -> Command:
    """Remove an app's schedule: cron file or timers, and the job templates (dropcluster uses it too)."""
    units = [unit_name(app, kind) for kind in KINDS]
    legacy = [f"pgmam-backup-{app}-{kind}" for kind in ("full", "diff", "incr")]  # before drills were scheduled
    return sh(_REMOVE, app, *units, *legacy)


def job_spec(host: str, cluster: ClusterFacts, kind: str) -> JobSpec:
    """Pure: the job a scheduled run of ``kind`` runs, with placeholders for run-time facts."""
    if kind == "verify":
        return verify.scheduled_drill_spec(host, cluster)
    return backup.backup_spec(host, cluster, kind, verify.STAMP_SLOT, "schedule", "scheduled")


def what(kind: str) -> str:
    """'full backup', 'restore drill': how a scheduled kind reads in messages and status."""
    return "restore drill" if kind == "verify" else f"{kind} backup"


def plan_schedule(host: str, facts: ServerFacts, app: str, calendars: dict[str, Calendar], remove: bool) -> Plan:
    """Pure: replace the app's schedule (or remove it). Each kind gets a job template and a timer or cron line."""
    cluster = restore.managed_cluster(host, facts, app)
    if remove:
        return Plan(
            host=host,
            title=f"remove the schedule of {app}",
            steps=(Step(f"remove {app}'s schedule", remove_command(app)),),
        )
    if not facts.systemd and not facts.tools.get("cron", False):
        raise Refusal(
            f"{host}: systemd is not PID 1 and cron is not installed, so nothing would run the schedule",
            hint="apt-get install cron",
        )
    steps = [Step(f"remove {app}'s current schedule", remove_command(app)), _install_runner()]
    for kind in calendars:
        spec = job_spec(host, cluster, kind)
        n = len(spec.plan.steps)
        count = "1 step" if n == 1 else f"{n} steps"
        steps.append(
            Step(
                f"write the job of scheduled {what(kind)}s ({JOBS_DIR}/{app}/{kind}.job, {count})",
                sh(_WRITE_JOB, f"{JOBS_DIR}/{app}", kind, render_script(spec), spec.info_text()),
            )
        )
    if facts.systemd:
        for kind, cal in calendars.items():
            name = unit_name(app, kind)
            service = (
                f"{configs.MARKER}\n[Unit]\nDescription=pgmam {what(kind)} of {app}\n\n[Service]\nType=oneshot\n"
                f"ExecStart=/bin/sh {RUNNER} {app} {kind}\n"
                "# 75: skipped because another job held the app, which is not a failure\n"
                "SuccessExitStatus=75\n"
            )
            timer = (
                f"{configs.MARKER}\n{_marker(app, kind, cal)}\n"
                f"[Unit]\nDescription=pgmam {what(kind)} of {app}: {cal.text}\n\n"
                # AccuracySec: systemd's default lets a timer fire up to a minute late
                f"[Timer]\nOnCalendar={cal.systemd()}\nAccuracySec=1s\nPersistent=true\n\n"
                "[Install]\nWantedBy=timers.target\n"
            )
            steps.append(
                Step(f"write {name}.service", configs.write_file(f"/etc/systemd/system/{name}.service", service))
            )
            steps.append(
                Step(f"write {name}.timer ({cal.text})", configs.write_file(f"/etc/systemd/system/{name}.timer", timer))
            )
        timers = [f"{unit_name(app, kind)}.timer" for kind in calendars]
        steps.append(Step("enable the timers", sh('systemctl daemon-reload && systemctl enable --now "$@"', *timers)))
    else:
        lines = [
            configs.MARKER,
            f"# Scheduled backups and restore drills of {app}; run by cron, results in {RESULTS_DIR}/{app}.",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        for kind, cal in calendars.items():
            lines.append(_marker(app, kind, cal))
            lines.append(f"{cal.cron()} root /bin/sh {RUNNER} {app} {kind}")
        steps.append(Step(f"write {cron_path(app)}", configs.write_file(cron_path(app), "\n".join(lines) + "\n")))
    return Plan(host=host, title=f"schedule backups of {app}", steps=tuple(steps))


def _marker(app: str, kind: str, cal: Calendar) -> str:
    """The line `inv status` reads the schedule from (see facts)."""
    return f"# pgmam-schedule app={app} type={kind} calendar={cal.text.replace(' ', '_')}"


def _install_runner() -> Step:
    install = sh(
        'set -e; mkdir -p "$1"; printf "%s" "$2" > "$1/scheduled-run.tmp"; chmod 0755 "$1/scheduled-run.tmp"; '
        'mv -f "$1/scheduled-run.tmp" "$1/scheduled-run"',
        BIN_DIR,
        RUNNER_SCRIPT,
    )
    return Step(f"install the scheduled-run runner in {BIN_DIR}", install)
