"""The code pgmam runs on servers: the files under ``server/``, installed by content hash.

Every file under ``server/`` ships, and the Python modules the watchdog runs there
(:data:`SHIPPED_MODULES`, under ``py/``): the job runner, the launcher, the recovery of interrupted
jobs, the journal follower, the scheduled runner, the boot units and one script per step
(``server/steps/``). The first mutating command that reaches a server installs them into
``/var/lib/pgmam/code/<version>``, where the version is the hash of their manifest, and points
``/var/lib/pgmam/current`` at it. Steps name their version's directory, so a job or a schedule
written by one pgmam keeps running that pgmam's code after an upgrade; a version nothing names
any more is removed.

Steps call the scripts with their inputs as arguments (:func:`step`); no input is ever spliced
into a script's text. The probe and the installer are sent with the command that runs them:
they work on a server pgmam has not reached yet.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import shlex
import tarfile
from pathlib import Path

from .command import ROOT, Command, sh

PACKAGE_DIR = Path(__file__).resolve().parent
SERVER_DIR = PACKAGE_DIR / "server"
# The modules the watchdog runs on servers (server/watchdog.sh), shipped under py/pgmam_remote/:
# they import nothing beyond the standard library and each other (a unit test runs them so).
SHIPPED_MODULES = (
    "__init__",
    "command",
    "errors",
    "facts",
    "health",
    "metrics",
    "server_code",
    "timetable",
    "watchdog",
    "window",
)
STATE_DIR = "/var/lib/pgmam"
CODE_ROOT = f"{STATE_DIR}/code"
CURRENT = f"{STATE_DIR}/current"


def _read_files() -> dict[str, bytes]:
    if not SERVER_DIR.is_dir():  # imported by the watchdog on a server: it ships nothing
        return {}
    files = {
        path.relative_to(SERVER_DIR).as_posix(): path.read_bytes()
        for path in sorted(SERVER_DIR.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    files.update({f"py/pgmam_remote/{name}.py": (PACKAGE_DIR / f"{name}.py").read_bytes() for name in SHIPPED_MODULES})
    return files


FILES = _read_files()
# sha256sum's own format, so that the server checks the files with `sha256sum -c MANIFEST`
MANIFEST = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in FILES.items())
VERSION = hashlib.sha256(MANIFEST.encode()).hexdigest()[:16]
CODE_DIR = f"{CODE_ROOT}/{VERSION}"


def text(name: str) -> str:
    """A server file's text, e.g. ``text("probe.sh")``."""
    return FILES[name].decode()


def _bundle() -> str:
    """Every file plus MANIFEST as a base64 tar.gz; the same bytes for the same files."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for name, data in {"MANIFEST": MANIFEST.encode(), **FILES}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(raw.getvalue()).decode()


BUNDLE = _bundle()


def script(name: str, *args: str | int, user: str | None = ROOT, timeout: float | None = 600.0) -> Command:
    """Run one installed server script with its inputs as arguments."""
    if name not in FILES:
        raise ValueError(f"pgmam has no server script {name}")
    return Command.of(f"{CODE_DIR}/{name}", *args, user=user, timeout=timeout)


def step(name: str, *args: str | int, user: str | None = ROOT, timeout: float | None = 600.0) -> Command:
    """One step's script, ``server/steps/<name>.sh``."""
    return script(f"steps/{name}.sh", *args, user=user, timeout=timeout)


def install_then(command: Command) -> Command:
    """``command``, run right after the server code is installed (a no-op when it is there)."""
    return sh(
        'sh -c "$1" install "$2" "$3" >&2 || exit; shift 3; exec "$@"',
        text("install.sh"),
        VERSION,
        BUNDLE,
        *command.argv,
        user=command.user,
        timeout=command.timeout,
    )


def is_script(command: Command) -> bool:
    return bool(command.argv) and command.argv[0].startswith(f"{CODE_DIR}/")


def display(command: Command) -> str:
    """One readable line for --dry-run: server scripts by their name, long texts by their size."""
    argv = list(command.argv)
    if is_script(command):
        argv[0] = argv[0][len(CODE_DIR) + 1 :]
    line = " ".join(f"<{arg.count(chr(10))} lines>" if "\n" in arg else shlex.quote(arg) for arg in argv)
    if command.stdin is not None:
        line += f" < <{command.stdin_label or 'stdin'}>"
    return line if command.user in (None, ROOT) else f"{line}   (as {command.user})"
