"""schedule: scheduled backups per app, as systemd timers (systemd is PID 1) or /etc/cron.d entries.

A schedule is a small calendar language that both can express (parsed and rendered here,
purely): 'hourly', 'daily', 'weekly', 'monthly', or '[DAYS ]HH:MM' where DAYS is a day name,
a range ('Mon..Fri') or a list ('Sat,Sun'). Every scheduled run goes through one script on the
server that records its result where `inv status` reads it, so a failing scheduled backup turns
status red.
"""

from __future__ import annotations

from .. import configs, server_code
from ..command import Command
from ..errors import Refusal
from ..facts import ClusterFacts, ServerFacts
from ..inventory import Host
from ..job import JobSpec, JobState, render_script
from ..plan import Plan, Step
from ..runner import HostJob, Prepared, Report
from ..timetable import KINDS, Calendar, next_run, parse_calendar, split_kind, what
from . import backup, restore, verify

# The one entry point of cron lines and systemd services (server/scheduled-run.sh APP KIND): it
# fills the run-time facts into the job `inv schedule` wrote, runs it through pgmam's job runner,
# and records the result where `inv status` reads it.
RUNNER = f"{server_code.CODE_DIR}/scheduled-run.sh"
JOBS_DIR = "/var/lib/pgmam/schedules"  # per app: <kind>.job and <kind>.info, templates of a job
RESULTS_DIR = "/var/lib/pgmam/scheduled"
DEFAULTS = {"full": "Sun 03:00", "diff": "Mon..Sat 03:00"}
# Backups into an off-host repo, and drills from it, have kinds "REPO-full", "REPO-diff",
# "REPO-incr", "REPO-verify"; backups by default an hour after the local ones, so the two never
# read the data files at the same time.
REPO_DEFAULTS = {"full": "Sun 04:00", "diff": "Mon..Sat 04:00"}


# -- the plan (pure) ------------------------------------------------------------------------


def cron_path(app: str) -> str:
    return f"/etc/cron.d/pgmam-{app}"


def unit_name(app: str, kind: str) -> str:
    return f"pgmam-schedule-{app}-{kind}"


def remove_command(app: str) -> Command:
    """Remove an app's schedule: cron file or timers, and the job templates (dropcluster uses it too)."""
    return server_code.step("remove-schedule", app)


def job_spec(host: str, cluster: ClusterFacts, kind: str) -> JobSpec:
    """Pure: the job a scheduled run of ``kind`` runs, with placeholders for run-time facts."""
    repo, what_kind = split_kind(kind)
    if what_kind == "verify":
        return verify.scheduled_drill_spec(host, cluster, repo)
    return backup.backup_spec(host, cluster, what_kind, verify.STAMP_SLOT, "schedule", "scheduled", repo)


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
        stamp = restore.job_stamp(facts)
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
