"""A remote command as data: an argv plus who runs it, and the one quoting helper.

Every remote command is a :class:`Command` and is turned into a shell line only by
:func:`shell_line`, with ``shlex``. Nothing else in pgmam builds shell strings. This module
needs nothing beyond the standard library: the watchdog imports it on servers.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

ROOT = "root"
POSTGRES = "postgres"
LOGIN = None  # run as the SSH login user, without sudo


@dataclass(frozen=True)
class Command:
    """A remote command: argv, the user it runs as, and how long it may take."""

    argv: tuple[str, ...]
    user: str | None = ROOT
    timeout: float | None = 600.0
    # fed to the command's stdin: how a secret reaches a server, never in a command line
    stdin: str | None = field(default=None, repr=False, compare=False)
    stdin_label: str = ""  # what the stdin holds, for --dry-run ("config with the repo passphrase")

    @classmethod
    def of(cls, *argv: str | int, user: str | None = ROOT, timeout: float | None = 600.0) -> Command:
        return cls(tuple(str(a) for a in argv), user, timeout)

    def with_stdin(self, text: str, label: str) -> Command:
        return replace(self, stdin=text, stdin_label=label)

    def line(self, sudo_flags: Sequence[str] = ("-n",)) -> str:
        return shell_line(self.argv, self.user, sudo_flags)


def shell_line(argv: Sequence[str], user: str | None = ROOT, sudo_flags: Sequence[str] = ("-n",)) -> str:
    """The one quoting helper: argv (+ sudo to ``user``) -> a POSIX shell line.

    ``cd /`` first so that a command run as postgres never trips over a login
    user's unreadable home directory.
    """
    if user is None:
        return shlex.join(argv)
    sudo = ["sudo", *sudo_flags]
    if user != ROOT:
        sudo += ["-u", user]
    return "cd / && " + shlex.join([*sudo, "--", *argv])


def job_line(command: Command) -> str:
    """The shell line for a step run by a server-side job, which already runs as root."""
    if command.stdin is not None:
        raise ValueError("a command that reads a secret on stdin cannot run in a server job")
    argv = list(command.argv)
    if command.user not in (None, ROOT):
        argv = ["runuser", "-u", command.user, "--", *argv]
    return shlex.join(argv)


def sh(script: str, *args: str | int, user: str | None = ROOT, timeout: float | None = 600.0) -> Command:
    """A compound command, deliberately wrapped in ``sh -c`` with its inputs as $1, $2...

    The script is a constant written in pgmam; user input only ever arrives
    as positional arguments, never inside the script text.
    """
    return Command.of("sh", "-c", script, "pgmam", *args, user=user, timeout=timeout)
