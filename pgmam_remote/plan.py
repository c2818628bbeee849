"""Step / Plan: what an operation will do, printable for --dry-run, and the executor.

A plan is pure data built from facts. ``--dry-run`` prints it; a real run
executes the very same object, step by step, streaming output. A step may
carry an ``undo`` command: when a later step fails, the executor runs the
undos of the completed steps in reverse order and says what it did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import server_code
from .command import Command
from .console import Console
from .errors import PgmamError, RemoteCommandError
from .remote import HostSession, Result


@dataclass(frozen=True)
class Step:
    title: str
    command: Command
    long: bool = False  # show a spinner / progress while it runs
    undo: Command | None = None
    hint: str | None = None  # what to do if this step fails
    undo_if_failed: bool = False  # in a job, run the undo also when this very step fails (cleans partial work)
    commit: bool = False  # in a job: once done, the app runs on its new data; recovering keeps it
    on: str | None = None  # runs on this other host (a repository host), not on the plan's


@dataclass(frozen=True)
class Plan:
    host: str
    title: str
    steps: tuple[Step, ...]
    done: tuple[str, ...] = ()  # things found already in place (shown, not run)
    as_job: bool = False  # runs on the server as one detached root job (see job.py)

    @property
    def empty(self) -> bool:
        return not self.steps

    def render(self) -> list[str]:
        """The --dry-run output: one line per step, its command as it runs on the server (pgmam's
        own scripts by name, under the server code dir), and its undo when it has one."""
        lines = [f"{self.title} on {self.host}:"]
        if self.as_job:
            lines.append(
                "  (runs on the server as one detached job, as root; each step's undo runs if a later step fails)"
            )
        scripts = [s.command for s in self.steps] + [s.undo for s in self.steps if s.undo]
        if any(server_code.is_script(command) for command in scripts):
            lines.append(f"  (scripts named by a relative path are pgmam's, installed in {server_code.CODE_DIR})")
        lines += [f"  already done: {item}" for item in self.done]
        for i, step in enumerate(self.steps, 1):
            lines.append(f"  {i:>2}. {f'[{step.on}] ' if step.on else ''}{step.title}")
            lines.append(f"      $ {server_code.display(step.command)}")
            if step.undo:
                lines.append(f"      undo: $ {server_code.display(step.undo)}")
        if self.empty:
            lines.append("  nothing to do")
        return lines


@dataclass
class Outcome:
    """What happened when a plan ran: per-step results and timings."""

    results: list[tuple[Step, Result, float]] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def of(self, step: Step) -> Result:
        """The result of this very step (by identity: titles may repeat)."""
        return next(r for s, r, _ in self.results if s is step)


class PlanFailed(PgmamError):
    """A step failed; carries the step, the cause and what was undone."""

    def __init__(self, step: Step, cause: PgmamError, undone: list[str]) -> None:
        super().__init__(f"step '{step.title}' failed: {cause.message}", hint=step.hint or cause.hint)
        self.step = step
        self.cause = cause
        self.undone = undone

    def tail(self) -> list[str]:
        return self.cause.tail() if isinstance(self.cause, RemoteCommandError) else []


def execute(
    plan: Plan, session: HostSession, console: Console, *, others: dict[str, HostSession] | None = None
) -> Outcome:
    """Run every step on the session's host (a step with ``on`` on that one of ``others``); on
    failure undo completed steps and raise PlanFailed."""
    sessions = others or {}
    outcome = Outcome()
    started = time.monotonic()
    completed: list[Step] = []
    total = len(plan.steps)
    for index, step in enumerate(plan.steps, 1):
        host = step.on or plan.host
        console.step(host, index, total, step.title)
        t0 = time.monotonic()
        try:
            result = _run_step(step, sessions[step.on] if step.on else session, console, host)
        except PgmamError as exc:
            outcome.undone = _undo(completed, session, console, plan.host, sessions)
            raise PlanFailed(step, exc, outcome.undone) from exc
        outcome.results.append((step, result, time.monotonic() - t0))
        completed.append(step)
    outcome.seconds = time.monotonic() - started
    return outcome


def _run_step(step: Step, session: HostSession, console: Console, host: str) -> Result:
    if not step.long:
        return session.run(step.command)

    def on_line(line: str, is_stderr: bool) -> None:
        if is_stderr:
            console.remote_line(host, line, is_stderr=True)

    with console.spinner(f"{host}: {step.title}"):
        return session.run(step.command, on_line=on_line)


def _undo(
    completed: list[Step], session: HostSession, console: Console, host: str, others: dict[str, HostSession]
) -> list[str]:
    undone = []
    for step in reversed(completed):
        if step.undo is None:
            continue
        try:
            (others[step.on] if step.on else session).run(step.undo)
            undone.append(step.title)
            console.warning(f"{host}: undid '{step.title}'")
        except PgmamError as exc:
            console.failure("undo failed", f"{host}: could not undo '{step.title}': {exc.message}")
    return undone
