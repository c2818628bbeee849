"""Server-side jobs: a Plan rendered into a detached shell job that survives the SSH link.

Every mutating operation runs on the server as a job (``systemd-run`` where systemd is PID 1,
else ``setsid``). The job holds the app's flock lock, runs each step within its deadline, writes a
journal, and when a step fails (or the job is told to stop) it runs the undo commands of the
completed steps in reverse order. The laptop only launches it and follows the journal; if the
link drops the job carries on, and running the same command again re-attaches to it.

A job that a crash, a kill or a power cut interrupted is finished or undone later by the same
script in ``recover`` mode: at boot before any cluster starts, and before the app's next job.
The shell lives in ``server/`` (job-runner.sh, launch-job.sh, recover-jobs.sh, follow-job.sh),
installed on the server by content hash (see server_code.py).

Journal lines: ``<epoch> <event> <details>`` with events begin, start, ok,
fail, log, note, undo, undone, undo-failed and end.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from . import server_code
from .command import Command, job_line
from .plan import Plan, Step

STATE_DIR = server_code.STATE_DIR
LOCK_DIR = f"{STATE_DIR}/locks"
JOBS_DIR = f"{STATE_DIR}/jobs"
RUN_DIR = f"{STATE_DIR}/run"
AUDIT_LOG = "/var/log/pgmam/audit.log"
STEP_DEADLINE_S = 600  # a step's limit unless its command says otherwise
LONG_STEP_DEADLINE_S = 6 * 3600  # restores, replays and backups of big apps
RECOVER_UNIT = "pgmam-recover.service"
KEEP_JOBS = int(re.search(r"^KEEP_JOBS=(\d+)", server_code.text("job-runner.sh"), re.MULTILINE).group(1))  # type: ignore[union-attr]


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


def step_deadline(step: Step) -> int:
    """Seconds a step may run in a job before it is stopped and the job undone."""
    limit = int(step.command.timeout or STEP_DEADLINE_S)
    return max(limit, LONG_STEP_DEADLINE_S) if step.long else limit


def render_script(spec: JobSpec, code_dir: str = server_code.CODE_DIR) -> str:
    """Pure: the plan as a shell job that sources its version's runner; one line per step, whose
    command and undo are single quoted words."""
    begin = shlex.quote(f"begin {len(spec.plan.steps)} {spec.plan.title}")
    lines = [
        f"# pgmam job: {spec.plan.title}".replace("\n", " "),
        f". {shlex.quote(code_dir + '/job-runner.sh')}",
        f'[ "$MODE" = recover ] || journal {begin}',
    ]
    for n, step in enumerate(spec.plan.steps, 1):
        words = [
            str(n),
            step.title,
            job_line(step.command),
            job_line(step.undo) if step.undo else "",
            "1" if step.undo_if_failed else "0",
            "1" if step.commit else "0",
            str(step_deadline(step)),
        ]
        lines.append("step " + " ".join(shlex.quote(word) for word in words))
    lines.append("finish")
    return "\n".join(lines) + "\n"


def launch_command(spec: JobSpec) -> Command:
    """Undoes this app's interrupted jobs, then starts the job detached (systemd-run or setsid)."""
    return server_code.script(
        "launch-job.sh",
        spec.dir,
        spec.app,
        render_script(spec),
        spec.info_text(),
        timeout=None,  # an interrupted job of this app is undone first: as long as that takes
    )


def follow_command(job_dir: str, until: int | None = None) -> Command:
    """Streams the journal from the start until the job ends (or is found dead), or until step
    ``until`` is done."""
    return server_code.script("follow-job.sh", job_dir, *([until] if until else []), timeout=None)


def commit_step(plan: Plan) -> int | None:
    """The number of the plan's commit step: once it is done the app runs on its new data, the
    command returns, and the job runs its remaining steps (a backup) on its own."""
    return next((n for n, step in enumerate(plan.steps, 1) if step.commit), None)


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
    # ok | rolled-back | failed | rollback-failed | incomplete (kept past its commit point) | locked | lost;
    # None while it runs (a client that returned at the commit point)
    result: str | None = None
    detail: str = ""
    began: float | None = None
    ended: float | None = None
    returned: bool = False  # its client returned at the commit point; the job runs on

    def running_on(self, commit: int) -> list[int]:
        """The steps after the commit point not done yet (running, or to come) when the client returned."""
        if not self.returned:
            return []
        return [
            n for n in range(commit + 1, self.total + 1) if n not in self.steps or self.steps[n].status == "running"
        ]

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


def parse_journal(text: str) -> JobState:
    state = JobState()
    for line in text.splitlines():
        state.apply(line)
    return state
