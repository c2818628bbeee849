"""The one place that talks to the terminal.

Human output goes to stderr through rich (colored on a TTY, plain lines
otherwise); machine output (``--json``) goes to stdout and nothing else does.
Text that came from a server is never parsed as rich markup.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console as RichConsole
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.theme import Theme

PIPE_WIDTH = 160
THEME = Theme(
    {
        "host": "bold cyan",
        "step": "bold",
        "ok": "green",
        "warn": "yellow",
        "bad": "bold red",
        "dim": "dim",
        "cmd": "magenta",
    }
)


class Console:
    """Status and progress on stderr, results (tables, JSON) on stdout."""

    def __init__(self, *, stdout: Any = None, stderr: Any = None) -> None:
        self.err = RichConsole(file=stderr or sys.stderr, theme=THEME, highlight=False, soft_wrap=True)
        self.out = RichConsole(file=stdout or sys.stdout, theme=THEME, highlight=False)
        if not self.out.is_terminal and "COLUMNS" not in os.environ:
            self.out.width = PIPE_WIDTH  # rich assumes 80 columns in a pipe; a status table needs more

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal

    def info(self, message: str, style: str | None = None) -> None:
        """A line of pgmam's own words (may contain rich markup)."""
        self.err.print(message, style=style)

    def plain(self, message: str) -> None:
        """A line that may carry text from a server: printed as is, never parsed as markup."""
        self.err.print(Text(message))

    def plan(self, lines: list[str]) -> None:
        """A rendered plan (--dry-run): on stdout, verbatim, never parsed as markup."""
        for line in lines:
            style = "cmd" if line.lstrip().startswith(("$", "undo:")) else ""
            self.out.print(Text(line, style=style), soft_wrap=True)  # never wrapped: commands stay copyable

    def step(self, host: str, index: int, total: int, title: str) -> None:
        self.err.print(f"[host]{escape(host)}[/] [dim]{index}/{total}[/] [step]{escape(title)}[/]")

    def command(self, host: str, line: str) -> None:
        self.err.print(Text.assemble((f"{host} ", "host"), ("$ ", "dim"), (line, "cmd")))

    def remote_line(self, host: str, line: str, *, is_stderr: bool = False) -> None:
        """One line a server printed: escaped, never interpreted as markup."""
        self.err.print(Text.assemble((f"{host} ", "host"), ("│ ", "dim"), (line, "warn" if is_stderr else "")))

    def success(self, message: str) -> None:
        self.err.print(f"[ok]✓[/] {message}")

    def warning(self, message: str) -> None:
        self.err.print(f"[warn]![/] {message}")

    def failure(self, label: str, message: str, hint: str | None = None, details: list[str] | None = None) -> None:
        """The one-line reason (plus hint and quoted remote lines) for a refusal or failure."""
        self.err.print(Text.assemble(("pgmam: ", "bad"), (f"{label}: ", "bad"), message))
        for line in details or []:
            self.err.print(Text.assemble(("  │ ", "dim"), line))
        if hint:
            self.err.print(Text.assemble(("  hint: ", "warn"), hint))

    @contextmanager
    def spinner(self, message: str) -> Iterator[None]:
        """A spinner on a TTY; a plain line otherwise (CI, pipes)."""
        if self.interactive:
            with self.err.status(escape(message)):
                yield
        else:
            self.err.print(f"[dim]… {escape(message)}[/]")
            yield

    def table(self, table: Table) -> None:
        self.out.print(table)

    def json(self, payload: Any) -> None:
        """Machine output: exactly one JSON document on stdout."""
        self.out.file.write(json.dumps(payload, indent=2, sort_keys=False) + "\n")
        self.out.file.flush()


_default: Console | None = None


class PlanRecorder(Console):
    """A console that keeps the plans it is given (to print them later, with others, as one) and
    prints everything else as a Console does."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def plan(self, lines: list[str]) -> None:
        self.lines += lines


def get_console() -> Console:
    global _default
    if _default is None:
        _default = Console()
    return _default
