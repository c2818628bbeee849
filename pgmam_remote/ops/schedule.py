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

from .. import configs, server_code
from ..errors import Refusal
from ..facts import ClusterFacts, ServerFacts
from ..inventory import Host
from ..job import JobSpec, JobState, render_script
from ..plan import Plan, Step
from ..remote import Command
from ..runner import HostJob, Prepared, Report
from . import backup, restore, verify

# The one entry point of cron lines and systemd services (server/scheduled-run.sh APP KIND): it
# fills the run-time facts into the job `inv schedule` wrote, runs it through pgmam's job runner,
# and records the result where `inv status` reads it.
RUNNER = f"{server_code.CODE_DIR}/scheduled-run.sh"
JOBS_DIR = "/var/lib/pgmam/schedules"  # per app: <kind>.job and <kind>.info, templates of a job
RESULTS_DIR = "/var/lib/pgmam/scheduled"
KINDS = ("full", "diff", "incr", "verify")
DEFAULTS = {"full": "Sun 03:00", "diff": "Mon..Sat 03:00"}
# Backups into an off-host repo, and drills from it, have kinds "REPO-full", "REPO-diff",
# "REPO-incr", "REPO-verify"; backups by default an hour after the local ones, so the two never
# read the data files at the same time.
REPO_DEFAULTS = {"full": "Sun 04:00", "diff": "Mon..Sat 04:00"}
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CALENDAR_HINT = "use 'hourly', 'daily', 'weekly', 'monthly', 'HH:MM', 'Sun 03:00', 'Mon..Fri 02:30' or 'Sat,Sun 04:00'"


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


def remove_command(app: str) -> Command:
    """Remove an app's schedule: cron file or timers, and the job templates (dropcluster uses it too)."""
    return server_code.step("remove-schedule", app)


def split_kind(kind: str) -> tuple[str | None, str]:
    """'vault-full' -> ('vault', 'full'); 'full' -> (None, 'full')."""
    if kind in KINDS:
        return None, kind
    repo, _, backup_type = kind.rpartition("-")
    return repo, backup_type


def job_spec(host: str, cluster: ClusterFacts, kind: str) -> JobSpec:
    """Pure: the job a scheduled run of ``kind`` runs, with placeholders for run-time facts."""
    repo, what_kind = split_kind(kind)
    if what_kind == "verify":
        return verify.scheduled_drill_spec(host, cluster, repo)
    return backup.backup_spec(host, cluster, what_kind, verify.STAMP_SLOT, "schedule", "scheduled", repo)


def what(kind: str, many: bool = False) -> str:
    """'full backup', 'full backups into repo vault', 'restore drill from repo vault': a scheduled
    kind in messages and status."""
    s = "s" if many else ""
    repo, what_kind = split_kind(kind)
    if what_kind == "verify":
        return f"restore drill{s} from repo {repo}" if repo else f"restore drill{s}"
    return f"{what_kind} backup{s} into repo {repo}" if repo else f"{what_kind} backup{s}"


def schedule_for(
    facts: ServerFacts,
    host: str,
    app: str,
    asked: dict[str, str | None],
    *,
    repo: str | None = None,
    host_repos: tuple[str, ...] = (),
    remove: bool = False,
) -> dict[str, Calendar]:
    """Pure: the app's whole schedule after this `inv schedule` (kind -> calendar; empty: none).

    Without ``repo`` the local backups and drills are replaced, and every off-host repo that keeps
    the app but has no schedule for it yet gets the repo defaults. With ``repo`` only that repo's
    backups are replaced. The other kinds stay as they are; those of repos the host no longer uses
    are dropped. ``remove`` removes everything, or with ``repo`` that repo's backups only."""
    if repo is not None:
        backup.check_kept_in(host, host_repos, facts, app, repo)
    kept = {
        e.type: parse_calendar(e.calendar)
        for e in facts.schedules
        if e.app == app and split_kind(e.type)[0] != repo and split_kind(e.type)[0] in (None, *host_repos)
    }
    if remove:
        return kept if repo else {}
    defaults = REPO_DEFAULTS if repo else DEFAULTS
    chosen = {**defaults, **{k: v for k, v in asked.items() if v}}
    new = {(f"{repo}-{k}" if repo else k): parse_calendar(text) for k, text in chosen.items()}
    if repo is None:
        for r in host_repos:
            if facts.shipping_of(r, app) is not None and not any(split_kind(k)[0] == r for k in kept):
                new |= {f"{r}-{k}": parse_calendar(text) for k, text in REPO_DEFAULTS.items()}
    merged = {**kept, **new}
    order = {kind: i for i, kind in enumerate(KINDS)}  # local first, then each repo's, full before diff
    return dict(sorted(merged.items(), key=lambda item: (split_kind(item[0])[0] or "", order[split_kind(item[0])[1]])))


def plan_schedule(host: str, facts: ServerFacts, app: str, calendars: dict[str, Calendar]) -> Plan:
    """Pure: replace the app's schedule with ``calendars`` (none: remove it). Each kind gets a job
    template and a timer or cron line."""
    cluster = restore.managed_cluster(host, facts, app)
    if not calendars:
        return Plan(
            host=host,
            title=f"remove the schedule of {app}",
            steps=(Step(f"remove {app}'s schedule", remove_command(app)),),
            as_job=True,
        )
    if not facts.systemd and not facts.tools.get("cron", False):
        raise Refusal(
            f"{host}: systemd is not PID 1 and cron is not installed, so nothing would run the schedule",
            hint="apt-get install cron",
        )
    steps = [Step(f"remove {app}'s current schedule", remove_command(app))]
    for kind in calendars:
        spec = job_spec(host, cluster, kind)
        n = len(spec.plan.steps)
        count = "1 step" if n == 1 else f"{n} steps"
        steps.append(
            Step(
                f"write the job of scheduled {what(kind, many=True)} ({JOBS_DIR}/{app}/{kind}.job, {count})",
                server_code.step(
                    "write-job-template", f"{JOBS_DIR}/{app}", kind, render_script(spec), spec.info_text()
                ),
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
        steps.append(Step("enable the timers", server_code.step("enable-timers", *timers)))
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
    return Plan(host=host, title=f"schedule backups of {app}", steps=tuple(steps), as_job=True)


def _marker(app: str, kind: str, cal: Calendar) -> str:
    """The line `inv status` reads the schedule from (see facts)."""
    return f"# pgmam-schedule app={app} type={kind} calendar={cal.text.replace(' ', '_')}"


class Schedule(HostJob):
    """inv schedule: the app's whole schedule, replaced by one job (the app's lock, a journal,
    an audit line)."""

    def __init__(self, host: Host, app: str, asked: dict[str, str | None], repo: str | None, remove: bool) -> None:
        super().__init__(host)
        self.app, self.asked, self.repo, self.remove = app, asked, repo, remove

    def plan(self, facts: ServerFacts) -> Prepared:
        restore.check_app_free(self.host.name, facts, self.app)
        self.calendars = schedule_for(
            facts, self.host.name, self.app, self.asked, repo=self.repo, host_repos=self.host.repos, remove=self.remove
        )
        plan = plan_schedule(self.host.name, facts, self.app, self.calendars)
        stamp = restore.stamp(facts.now)
        info = {"kinds": ",".join(self.calendars) or "none"}
        job = JobSpec("schedule", self.app, f"schedule-{self.app}-{stamp}", restore.holder(), info, plan)
        return Prepared(job)

    def report(self, state: JobState) -> Report:
        where = f"{self.app} on {self.host.name}"
        if not self.calendars:
            return Report([f"{where}: schedule removed"])
        upcoming = {kind: next_run(cal, self.facts).isoformat() for kind, cal in self.calendars.items()}
        return Report(
            [
                f"{where}: {what(kind, many=True)} {cal.text}, server time (next {upcoming[kind]})"
                for kind, cal in self.calendars.items()
            ]
        )
