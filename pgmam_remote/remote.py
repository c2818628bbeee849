"""SSH to one server: one Connection per host, sudo, quoting, streamed output.

Every remote command is a :class:`Command` (an argv plus who runs it) and is
turned into a shell line only by :func:`shell_line`, with ``shlex``. Nothing
else in pgmam builds shell strings.
"""

from __future__ import annotations

import getpass
import io
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, Failure, UnexpectedExit
from invoke.watchers import FailingResponder, ResponseNotAccepted

from .command import Command
from .errors import ConnectError, HostKeyError, RemoteCommandError, SudoError
from .inventory import Host

SUDO_PASSWORD_ENV = "PGMAM_SUDO_PASSWORD"
SUDO_PROMPT = "[pgmam] sudo password:"


@dataclass(frozen=True)
class Result:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class _LineSink:
    """File-like object that hands complete lines to a callback (for streaming)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.buffer = ""
        self.lock = threading.Lock()

    def write(self, data: str) -> int:
        with self.lock:
            self.buffer += data
            *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.emit(line.rstrip("\r"))
        return len(data)

    def flush(self) -> None:
        """Invoke flushes after every chunk it reads; a line cut at a chunk boundary must wait."""

    def finish(self) -> None:
        """The command ended: hand over a last line that had no newline."""
        with self.lock:
            rest, self.buffer = self.buffer, ""
        if rest:
            self.emit(rest.rstrip("\r"))


PasswordSource = Callable[[Host], str | None]


class PasswordPrompt:
    """Default password source: $PGMAM_SUDO_PASSWORD, else one no-echo prompt per login user.

    Thread-safe, so parallel hosts never prompt on top of each other; without a
    TTY and without the variable it returns None (the caller refuses clearly).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str | None, str] = {}

    def __call__(self, host: Host) -> str | None:
        if SUDO_PASSWORD_ENV in os.environ:
            return os.environ[SUDO_PASSWORD_ENV]
        with self._lock:
            if host.user not in self._cache:
                if not os.isatty(0):
                    return None
                self._cache[host.user] = getpass.getpass(f"sudo password for {host.user or 'you'} on {host.name}: ")
            return self._cache[host.user]


ask_password = PasswordPrompt()


class HostSession:
    """One SSH connection to one host, reused for every command of an operation."""

    def __init__(self, host: Host, *, password_source: PasswordSource = ask_password) -> None:
        self.host = host
        self.password_source = password_source
        self._password: str | None = None
        self._needs_password = False
        self.commands_run = 0
        self.connection = self._make_connection()

    # -- connecting -------------------------------------------------------
    def _make_connection(self) -> Connection:
        host = self.host
        overrides = {"load_ssh_configs": host.ssh_config is not None, "run": {"in_stream": False}}
        config = Config(overrides=overrides, runtime_ssh_path=str(host.ssh_config) if host.ssh_config else None)
        connect_kwargs: dict[str, object] = {
            "banner_timeout": host.connect_timeout,
            "auth_timeout": host.connect_timeout,
        }
        if host.identity_file:
            connect_kwargs["key_filename"] = [str(host.identity_file)]
        conn = Connection(
            host.address,
            user=host.user,
            port=host.port,
            config=config,
            connect_timeout=host.connect_timeout,
            connect_kwargs=connect_kwargs,
        )
        _verify_host_keys(conn, host.known_hosts)
        return conn

    def open(self) -> HostSession:
        host = self.host
        try:
            self.connection.open()
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"{host.name}: the SSH host key of {exc.hostname} does not match {host.known_hosts}",
                hint=(
                    "if the server was reinstalled, verify its new key out of band, then "
                    f"`ssh-keygen -R {exc.hostname} -f {host.known_hosts}` and add the new one; "
                    "otherwise someone may be intercepting the connection"
                ),
            ) from None
        except paramiko.AuthenticationException as exc:
            raise ConnectError(
                f"{host.name}: SSH login refused for {self.connection.user}@{host.address}: {exc}",
                hint="check user and identity_file in the inventory",
            ) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    f"{host.name}: unknown SSH host key for {host.address} (not in {host.known_hosts})",
                    hint=(
                        f"verify the server's fingerprint, then add it: ssh-keyscan -p {self.connection.port} "
                        f"{host.address} >> {host.known_hosts}"
                    ),
                ) from None
            raise ConnectError(f"{host.name}: SSH failed: {exc}") from None
        except TimeoutError:
            raise ConnectError(
                f"{host.name}: no answer from {host.address}:{self.connection.port} within {host.connect_timeout:g} s",
                hint="is the server up and reachable from here?",
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectError(
                f"{host.name}: cannot connect to {host.address}:{self.connection.port}: {reason}"
            ) from None
        return self

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> HostSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running ----------------------------------------------------------
    def run(
        self,
        command: Command,
        *,
        check: bool = True,
        on_line: Callable[[str, bool], None] | None = None,
    ) -> Result:
        """Run one command; stream its lines to ``on_line(line, is_stderr)`` if given."""
        result = self._run_once(command, on_line)
        if command.user is not None and not self._needs_password and _needs_password(result):
            self._needs_password = True
            result = self._run_once(command, on_line)
        if command.user is not None:
            _check_sudo(self.host, result)
        if check and not result.ok:
            raise RemoteCommandError.of(
                f"{self.host.name}: `{_short(result.command)}` exited {result.exit_status}", result
            )
        return result

    def _run_once(self, command: Command, on_line: Callable[[str, bool], None] | None) -> Result:
        watchers = []
        flags: tuple[str, ...] = ("-n",)
        stdin = command.stdin
        if self._needs_password and command.user is not None:
            password = self._sudo_password()
            flags = ("-S", "-p", SUDO_PROMPT)
            if stdin is not None:
                # sudo -S reads the password's line first and the command gets the rest; -k makes
                # sudo always read it, so a cached sudo ticket can never pass the password on
                flags = ("-S", "-k", "-p", SUDO_PROMPT)
                stdin = password + "\n" + stdin
            else:
                watchers.append(
                    FailingResponder(
                        pattern=re.escape(SUDO_PROMPT), response=password + "\n", sentinel="Sorry, try again"
                    )
                )
        line = command.line(flags)
        kwargs: dict[str, object] = {"warn": True, "hide": on_line is None, "pty": False, "watchers": watchers}
        if stdin is not None:
            kwargs["in_stream"] = io.StringIO(stdin)
        sinks: list[_LineSink] = []
        if on_line is not None:
            sinks = [_LineSink(lambda text: on_line(text, False)), _LineSink(lambda text: on_line(text, True))]
            kwargs["out_stream"], kwargs["err_stream"] = sinks
        if command.timeout:
            kwargs["timeout"] = command.timeout
        self.commands_run += 1
        try:
            res = self.connection.run(line, **kwargs)
        except CommandTimedOut as exc:
            raise RemoteCommandError(
                f"{self.host.name}: `{_short(line)}` did not finish within {exc.timeout:g} s",
                command=line,
                exit_status=-1,
                stdout=exc.result.stdout,
                stderr=exc.result.stderr,
            ) from None
        except Failure as exc:
            if isinstance(exc.reason, ResponseNotAccepted):
                self._password = None
                raise SudoError(
                    f"{self.host.name}: sudo rejected the password for {self.connection.user}",
                    hint=f"check ${SUDO_PASSWORD_ENV} or type it again",
                ) from None
            raise
        except UnexpectedExit as exc:  # only without warn=True; kept for safety
            res = exc.result
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectError(f"{self.host.name}: connection lost: {exc}") from None
        for sink in sinks:
            sink.finish()
        return Result(line, res.exited if res.exited is not None else -1, res.stdout, res.stderr)

    def _sudo_password(self) -> str:
        if self._password is None:
            password = self.password_source(self.host)
            if password is None:
                raise SudoError(
                    f"{self.host.name}: sudo needs a password for {self.connection.user} and none was given",
                    hint=f"set {SUDO_PASSWORD_ENV}, run from a terminal, or allow NOPASSWD sudo",
                )
            self._password = password
        return self._password


def _verify_host_keys(conn: Connection, known_hosts: Path) -> None:
    """Fabric auto-accepts unknown host keys; refuse them instead, for the gateway too."""
    try:
        conn.client.load_system_host_keys(str(known_hosts))
    except FileNotFoundError:
        raise HostKeyError(
            f"known_hosts file {known_hosts} does not exist",
            hint=f"create it with the servers' verified keys (ssh-keyscan HOST >> {known_hosts})",
        ) from None
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if isinstance(conn.gateway, Connection):
        _verify_host_keys(conn.gateway, known_hosts)


def _needs_password(result: Result) -> bool:
    return result.exit_status == 1 and "a password is required" in result.stderr


def _check_sudo(host: Host, result: Result) -> None:
    err = result.stderr
    if result.exit_status == 127 and re.search(r"sudo: (command )?not found", err):
        raise SudoError(f"{host.name}: sudo is not installed", hint="install it: apt-get install sudo")
    if result.exit_status == 1 and ("is not in the sudoers file" in err or "is not allowed to run sudo" in err):
        raise SudoError(
            f"{host.name}: the login user may not use sudo",
            hint="give the inventory's user sudo rights (e.g. a file in /etc/sudoers.d)",
        )


def _short(line: str, limit: int = 120) -> str:
    line = line.removeprefix("cd / && ")
    return line if len(line) <= limit else line[: limit - 1] + "…"
