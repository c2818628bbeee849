"""The fast tier: pgmam's server scripts, run for real against a throwaway local PostgreSQL.

No sandbox and no SSH. A private mount and network namespace on this machine stands in for a
server: temp dirs are bound over the paths the scripts use (/var/lib, /var/log, /var/spool, /run,
/etc/postgresql, /etc/pgbackrest, /etc/cron.d), so the scripts see a server's paths while this
machine's own files stay untouched, and its PostgreSQL listens on a loopback of its own. It has no
/run/systemd, so postgresql-common runs its clusters without systemd, as on a server without it.

Every process the tier starts lives in that namespace; teardown kills them all, and only them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgmam_remote import configs
from pgmam_remote.facts import PGBACKREST_CONF
from pgmam_remote.server_code import SERVER_DIR

# /tmp/pgbackrest: pgBackRest's lock path, which two stand-in servers (pytest -n) must not share
BOUND = (
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/run",
    "/etc/postgresql",
    "/etc/pgbackrest",
    "/etc/cron.d",
    "/tmp/pgbackrest",
)
# dirs a Debian server has, made in the bound temp dirs: path, owner, mode
MADE = (
    ("/var/lib/postgresql", "postgres", 0o755),
    ("/var/lib/pgbackrest", "postgres", 0o750),
    ("/var/log/postgresql", "postgres", 0o1775),
    ("/var/log/pgbackrest", "postgres", 0o770),
    ("/var/spool/pgbackrest", "postgres", 0o750),
    ("/run/postgresql", "postgres", 0o2775),
    ("/etc/pgbackrest/conf.d", "root", 0o755),
    ("/tmp/pgbackrest", "postgres", 0o770),
)
VERSION = 15
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}

# Runs in the new namespaces: loopback up, the temp dirs bound, then it holds them open.
HOLD = """set -e
ip link set lo up
root=$1; shift
for target in "$@"; do mount --bind "$root$target" "$target"; done
echo ready
exec sleep infinity
"""


class Throwaway:
    """A stand-in server in a namespace: run commands and pgmam's scripts in it as root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.holder: subprocess.Popen[str] | None = None
        self.namespace = ""  # the holder's mount namespace, e.g. mnt:[4026532311]

    def start(self) -> None:
        for target in BOUND:
            (self.root / target.lstrip("/")).mkdir(parents=True)
        for path, owner, mode in MADE:
            made = self.root / path.lstrip("/")
            made.mkdir(parents=True, exist_ok=True)
            shutil.chown(made, owner, owner)
            made.chmod(mode)
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", HOLD, "-", str(self.root), *BOUND],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.holder.stdout is not None and self.holder.stdout.readline().strip() == "ready"
        self.namespace = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")

    def run(
        self, *argv: str | int, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        assert self.holder is not None
        command = ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--", "env", "-i"]
        command += [f"{k}={v}" for k, v in {**ENV, **(env or {})}.items()]
        done = subprocess.run(
            [*command, *map(str, argv)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def script(self, name: str, *args: str | int, **kwargs) -> subprocess.CompletedProcess[str]:
        """One of pgmam's server scripts, e.g. script("steps/move.sh", a, b), from the package."""
        return self.run("sh", SERVER_DIR / name, *args, **kwargs)

    def step(self, name: str, *args: str | int, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.script(f"steps/{name}.sh", *args, **kwargs)

    def sql(self, query: str, port: int = 5432, host: str = "/var/run/postgresql", db: str = "postgres") -> str:
        psql = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1"]
        return self.run(*psql, "-h", host, "-p", port, "-d", db, "-c", query).stdout.strip()

    def path(self, path: str) -> Path:
        """Where a server path is on this machine (for reading files the scripts wrote)."""
        for target in sorted(BOUND, key=len, reverse=True):
            if path == target or path.startswith(target + "/"):
                return self.root / path.lstrip("/")
        raise ValueError(f"{path} is not inside the throwaway server")

    def processes(self) -> list[int]:
        """Every process in the namespace (the holder's mount namespace), the holder included."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "mnt") == self.namespace:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def stop(self) -> None:
        if self.holder is None:
            return
        for _ in range(50):
            alive = self.processes()
            if not alive:
                break
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        self.holder.wait(timeout=10)
        self.holder = None


def _needs() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, runuser)"
    for tool in ("unshare", "nsenter", "ip", "pg_createcluster", "pgbackrest", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path(f"/usr/lib/postgresql/{VERSION}/bin/postgres").exists():
        return f"PostgreSQL {VERSION} is not installed"
    # Bind targets must exist. A fresh machine may lack some (Debian's pgbackrest makes no
    # /etc/pgbackrest/); empty dirs at a server's standard paths, as the sandbox makes them too.
    for target in BOUND:
        if Path(target).exists():
            continue
        Path(target).mkdir(mode=0o755, parents=True)
        if target == "/tmp/pgbackrest":  # as pgBackRest itself makes it: this machine's may use it too
            shutil.chown(target, "postgres", "postgres")
            Path(target).chmod(0o770)
    return None


@pytest.fixture(scope="module")
def bare() -> Iterator[Throwaway]:
    """A throwaway server with nothing of pgmam's on it yet."""
    yield from _throwaway(lambda box: None)


@pytest.fixture(scope="module")
def server() -> Iterator[Throwaway]:
    """A throwaway server with one app, shop (PostgreSQL 15, port 5432), as pgmam sets one up:
    the global pgBackRest config, the stanza config, WAL archiving, a stanza and a full backup."""
    yield from _throwaway(_one_app)


@pytest.fixture(scope="module")
def german(server: Throwaway) -> dict[str, str]:
    """The environment of a German-speaking server: de_DE.UTF-8, compiled into the throwaway
    server's own dir (LOCPATH), so this machine's locales stay as they are."""
    if not Path("/usr/share/i18n/locales/de_DE").exists():
        pytest.skip("the locales package is not installed")
    built = server.path("/var/lib/locale/de_DE.UTF-8")
    if not built.exists():
        built.parent.mkdir(exist_ok=True)
        subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(built)], check=True, capture_output=True)
    return {"LOCPATH": "/var/lib/locale", "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8"}


def _one_app(box: Throwaway) -> None:
    box.step("write-file", PGBACKREST_CONF, "root:postgres", "0640", configs.global_conf(2))
    conf = configs.stanza_conf("shop", VERSION, 5432)
    box.step("write-file", configs.stanza_conf_path("shop"), "root:postgres", "0640", conf)
    box.run("pg_createcluster", "--port", 5432, VERSION, "shop", "--", "--data-checksums")
    archive = configs.archive_conf("shop")
    box.step("write-file", configs.pg_conf_path(VERSION, "shop"), "postgres:postgres", "0644", archive)
    box.run("pg_ctlcluster", VERSION, "shop", "start")
    box.run("runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=shop", "stanza-create")
    box.sql("create table items (id int primary key, note text)")
    box.sql("insert into items select g, 'before the backup' from generate_series(1, 100) g")
    box.step("backup", "shop", VERSION, "full", "check")


def _throwaway(prepare: Callable[[Throwaway], None]) -> Iterator[Throwaway]:
    reason = _needs()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="pgmam-server-"))
    root.chmod(0o755)
    box = Throwaway(root)
    try:
        box.start()
        prepare(box)
        yield box
    finally:
        box.stop()
        shutil.rmtree(root, ignore_errors=True)
