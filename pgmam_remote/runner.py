"""One way to run an operation, written once.

Every task that changes a server goes through ``run``:

    connect -> facts -> plan (pure; the refusals come from it) -> --dry-run prints it and stops
    -> the user confirms -> the plan runs (a server job: the app's lock, a journal, an audit line)
    -> a report

An operation is an object with the parts of the ``Operation`` protocol. ``HostJob`` is the common
case, one job on one server: it needs only ``plan`` (pure) and ``report``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, Self

from .console import Console
from .errors import ConnectError, PgmamError, Refusal
from .facts import ServerFacts, gather
from .inventory import Host
from .job import JobSpec, JobState, commit_step, follow_command, launch_command
from .remote import HostSession, PasswordSource, ask_password


@dataclass(frozen=True)
class Confirmation:
    """The plan in plain words, and what the user types to go on."""

    words: tuple[str, ...]
    typed: str


@dataclass
class Report:
    """What an operation did: success lines (one per app or item), then details (plain), then
    notes (dim)."""

    done: list[str]
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Operation(Protocol):
    def __enter__(self) -> Operation: ...  # opens its connections

    def __exit__(self, *exc: object) -> None: ...

    def prepare(self, *, dry_run: bool) -> None:
        """Facts, refusals and the plan. Changes nothing on a dry run; otherwise at most finishes
        what an interrupted job of the same app left (as the next job would)."""

    def render(self) -> list[str]:
        """The plan for --dry-run."""

    def confirmations(self) -> list[Confirmation]:
        """Asked in order before anything changes; none for an operation that loses nothing."""

    def run(self, console: Console) -> Report: ...


Ask = Callable[[str], str]


def run(op: Operation, console: Console, *, dry_run: bool = False, yes: bool = False, ask: Ask = input) -> None:
    """Prepare; print the plan (--dry-run) or confirm, run and report."""
    with op:
        op.prepare(dry_run=dry_run)
        if dry_run:
            console.plan(op.render())
            return
        for confirmation in op.confirmations():
            confirm(confirmation, console, yes, ask)
        report = op.run(console)
    for line in report.done:
        console.success(line)
    for line in report.lines:
        console.plain(f"  {line}")
    for note in report.notes:
        console.info(f"  {note}")


def confirm(confirmation: Confirmation, console: Console, yes: bool, ask: Ask = input) -> None:
    """Show the words; the user types the app name. --yes skips; no terminal and no --yes refuses."""
    for line in confirmation.words:
        console.plain(f"  {line}")
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refusal("confirmation needed and there is no terminal to ask on", hint="re-run with --yes to confirm")
    if ask(f"Type '{confirmation.typed}' to proceed: ").strip() != confirmation.typed:
        raise Refusal("not confirmed; nothing was changed")


@dataclass(frozen=True)
class Prepared:
    """A job ready to launch, and how to ask for it."""

    spec: JobSpec
    confirmations: tuple[Confirmation, ...] = ()
    undone: str | None = None  # what a failure that was rolled back means, in the app's words


class OnHost:
    """An operation over one SSH connection to one server, open while it runs."""

    def __init__(self, host: Host, password_source: PasswordSource = ask_password) -> None:
        self.host = host
        self.session = HostSession(host, password_source=password_source)

    def __enter__(self) -> Self:
        self.session.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()


class HostJob(OnHost):
    """An operation that is one server job: ``plan`` turns the facts into a job (pure, refusing
    what it must), ``report`` turns its end into words. The app's interrupted job is finished
    first (never on a dry run), and a job that goes on past its commit point says so."""

    app: str  # its interrupted jobs are finished first ("--all": every app's)

    def plan(self, facts: ServerFacts) -> Prepared:
        raise NotImplementedError

    def report(self, state: JobState) -> Report:
        raise NotImplementedError

    def prepare(self, *, dry_run: bool) -> None:
        self.facts, _ = gather(self.session, recover=None if dry_run else self.app)
        self.prepared = self.plan(self.facts)

    def render(self) -> list[str]:
        return self.prepared.spec.plan.render()

    def confirmations(self) -> list[Confirmation]:
        return list(self.prepared.confirmations)

    def run(self, console: Console) -> Report:
        spec = self.prepared.spec
        state = run_job(self.session, spec, console, self.prepared.undone)
        report = self.report(state)
        going = goes_on(spec, state)
        if going:
            report.notes.append(f"then {going}")
        return report


# -- running a job --------------------------------------------------------------------------


class JobFailed(PgmamError):
    """A server-side job ended in anything but ok; the message says where everything is."""

    def __init__(self, message: str, hint: str | None, logs: list[str]) -> None:
        super().__init__(message, hint)
        self.logs = logs

    def tail(self) -> list[str]:
        return self.logs[-15:]


def launch(session: HostSession, spec: JobSpec) -> None:
    session.run(launch_command(spec))


def run_job(
    session: HostSession, spec: JobSpec, console: Console, undone: str | None = None, *, resumes: bool = False
) -> JobState:
    """Launch the job, follow its journal to the end, or to its commit point (the rest runs on, and
    status shows it); anything but ok raises JobFailed, with the failed step's hint.
    ``resumes``: a failure keeps what was done, and the same command goes on from there."""
    launch(session, spec)
    until = commit_step(spec.plan)
    state = follow(session, spec.dir, console, until)
    if state.result != "ok" and not state.returned:
        where = f"job journal: {spec.dir}/journal"
        failed = state.failed_step
        hint = spec.plan.steps[failed.n - 1].hint if failed and failed.n <= len(spec.plan.steps) else None
        where = f"{hint} ({where})" if hint else where
        raise outcome_error(session.host.name, spec.app, state, where, undone, resumes=resumes)
    return state


def goes_on(spec: JobSpec, state: JobState) -> str | None:
    """What the job still does after its client returned at the commit point, in one line."""
    commit = commit_step(spec.plan)
    if not state.returned or commit is None:
        return None
    titles = "; ".join(spec.plan.steps[n - 1].title for n in state.running_on(commit))
    return f"{titles}: running on the server as job {spec.job_id} (`inv status` shows it)"


def follow(session: HostSession, job_dir: str, console: Console, until: int | None = None) -> JobState:
    """Render the job's journal as it grows, until the job ends (or step ``until`` is done)."""
    state = JobState()
    host = session.host.name

    def on_line(line: str, is_stderr: bool) -> None:
        if is_stderr:
            return
        event = state.apply(line)
        if event is None:
            return
        kind, details = event
        if kind == "start":
            n, _, title = details.partition(" ")
            console.step(host, int(n), state.total, title)
        elif kind == "fail":
            console.warning(f"{host}: step {details.split()[0]} failed")
        elif kind == "log":
            console.remote_line(host, details, is_stderr=True)
        elif kind == "undo":
            step = state.steps.get(int(details))
            console.warning(f"{host}: undoing: {step.title if step else details}")
        elif kind == "undo-failed":
            console.failure("undo failed", f"{host}: could not undo step {details}")
        elif kind == "note" and details.startswith("stale_lock="):
            console.warning(f"{host}: took over a stale lock ({details.split('=', 1)[1]})")

    try:
        session.run(follow_command(job_dir, until), on_line=on_line, check=False)
        committed = state.steps.get(until or 0)
        state.returned = state.result is None and committed is not None and committed.status == "ok"
    except ConnectError as exc:
        raise ConnectError(
            exc.message,
            hint=f"the job keeps running on the server ({job_dir}); re-run the same command to re-attach",
        ) from None
    return state


def outcome_error(
    host: str, app: str, state: JobState, where: str, undone: str | None = None, *, resumes: bool = False
) -> JobFailed:
    """Turn a non-ok job result into one clear error saying what happened and where things are."""
    failed = state.failed_step
    step = f"step {failed.n} ({failed.title})" if failed else "a step"
    if state.result == "locked":
        return JobFailed(f"{host}: {app} is busy: {state.detail}", "wait for it, then re-run", [])
    if state.result == "rolled-back":
        undone = undone or f"everything was rolled back: {app} runs on its previous data"
        return JobFailed(f"{host}: {step} failed; {undone}", where, state.logs)
    if state.result == "failed":  # nothing was undone: no step before it had anything to undo
        if resumes:
            said = "what was done is kept: the same command resumes"
        elif any(s.status == "ok" for s in state.steps.values()):
            said = "the steps before it are done and kept"
        else:
            said = "nothing was changed"
        return JobFailed(f"{host}: {step} failed; {said}", where, state.logs)
    if state.result == "rollback-failed":
        return JobFailed(
            f"{host}: {step} failed AND the rollback did not complete: {app} needs attention now",
            f"{where}; the job's logs are on the server",
            state.logs,
        )
    return JobFailed(
        f"{host}: the job stopped without finishing ({state.detail or 'no end in its journal'})", where, []
    )
