"""The one exception tree of pgmam.

Library code raises these; only the edge (``tasks.py``) turns them into a
message and an exit status. Every error carries a one-line reason and, where
there is one, a hint saying what to do next.
"""

from __future__ import annotations


class PgmamError(Exception):
    """Base of every error pgmam raises on purpose."""

    exit_code = 1
    label = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(PgmamError):
    """The command line itself is wrong (missing or conflicting flags, unknown host)."""

    exit_code = 2
    label = "usage"


class InventoryError(PgmamError):
    """hosts.toml is missing, malformed or names something unknown."""

    label = "inventory"


class Refusal(PgmamError):
    """A precondition failed; nothing was changed on any server."""

    label = "refused"


class ConnectError(PgmamError):
    """The server could not be reached or would not let us in."""

    label = "unreachable"


class HostKeyError(ConnectError):
    """The server's SSH host key is unknown or does not match known_hosts."""

    label = "host key"


class SudoError(PgmamError):
    """sudo is missing, refused us, or the password was wrong."""

    label = "sudo"


class RemoteCommandError(PgmamError):
    """A remote command exited non-zero; carries what it printed."""

    label = "failed"

    def __init__(
        self,
        message: str,
        *,
        command: str,
        exit_status: int,
        stdout: str = "",
        stderr: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.command = command
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr

    @classmethod
    def of(cls, message: str, result: object) -> RemoteCommandError:
        """From a remote.Result (anything with command, exit_status, stdout and stderr)."""
        return cls(
            message,
            command=result.command,  # type: ignore[attr-defined]
            exit_status=result.exit_status,  # type: ignore[attr-defined]
            stdout=result.stdout,  # type: ignore[attr-defined]
            stderr=result.stderr,  # type: ignore[attr-defined]
        )

    def tail(self, lines: int = 12) -> list[str]:
        """The last lines the command printed, stderr first: what a user needs to see."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return text[-lines:]


class SandboxError(PgmamError):
    """The local sandbox could not be brought up, inspected or torn down."""

    label = "sandbox"
