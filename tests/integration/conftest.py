"""The sandbox for integration tests: real sshd, sudo, PostgreSQL and pgBackRest over SSH.

One sandbox per test module (its network names are fixed, so only one can
exist at a time); torn down after the module, leaving no process behind. Tests use distinct
app names and ports so they never depend on each other's leftovers.

Servers boot systemd (systemd-nspawn), as production servers do. A module that sets
``SYSTEMD_SERVERS = False`` gets plain servers instead: no systemd, so schedules run from cron.
That is the lane for servers without systemd. A module that sets ``S3 = True`` also gets the
sandbox's S3 server (repo ``bucket`` of the inventory).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

import pgmam_sandbox as sandbox

REPO = Path(__file__).resolve().parents[2]
STATUS_SCHEMA = REPO / "docs" / "reference" / "status.schema.json"
# Its own names, subnet and users: a test run never touches the sandbox a user rehearses in.
# PGMAM_IT_ID (up to 6 letters/digits) gives a run its own too, so two runs can coexist.
RUN_ID = os.environ.get("PGMAM_IT_ID", "it")
NAMING = sandbox.SandboxNaming(
    netns_prefix=f"pgmam-{RUN_ID}",
    link_prefix=f"pgm{RUN_ID}",
    subnet=f"10.213.{3 if RUN_ID == 'it' else 100 + sum(map(ord, RUN_ID)) % 100}.0/24",
    login_user=f"pgmam{RUN_ID}",
    sudo_password_user=f"pgmam{RUN_ID}pw",
)
STATE_DIR = sandbox.state_dir_for(f".sandbox-{RUN_ID}")

if os.geteuid() != 0:
    pytest.skip("integration tests need root (namespaces, sshd, sudo)", allow_module_level=True)


@dataclass
class Box:
    sandbox: sandbox.Sandbox
    naming: sandbox.SandboxNaming = NAMING

    @property
    def inventory(self) -> Path:
        return self.sandbox.inventory

    def server(self, name: str) -> sandbox.SandboxServer:
        return next(s for s in self.sandbox.servers if s.name == name)

    def on(self, name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command directly inside a server (as root, not through pgmam): the test's own eyes."""
        return subprocess.run(
            sandbox.netns_exec_argv(self.server(name), list(argv)), capture_output=True, text=True, check=check
        )

    def clusters(self, name: str) -> list[str]:
        out = self.on(name, "pg_lsclusters", "--no-header").stdout
        return sorted(" ".join(line.split()[:4]) for line in out.splitlines() if line.strip())

    def config_files(self, name: str) -> list[str]:
        out = self.on(name, "sh", "-c", "ls -1 /etc/pgbackrest /etc/pgbackrest/conf.d 2>/dev/null").stdout
        return sorted(out.split())

    def psql(self, name: str, port: int, sql: str, db: str = "postgres") -> str:
        argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(port), "-d", db]
        done = self.on(name, *argv, "-c", sql, check=False)
        assert done.returncode == 0, f"psql on {name}:{port} failed ({done.returncode}): {done.stderr.strip()}"
        return done.stdout.strip()

    @contextlib.contextmanager
    def fake_job(self, name: str, app: str, op: str = "pitr") -> Iterator[int]:
        """The app's lock held by a live process whose command line says pgmam, as a running job's is.

        Yields the holder's pid (as the server sees it); on exit the process is killed and the lock removed."""
        lock = f"/var/lib/pgmam/locks/{app}"
        # It holds the app's flock, as a job does. It writes its own pid: on a systemd server pids
        # inside differ from ours.
        script = (
            f'mkdir -p {lock} && exec 8> {lock}.lock && flock 8 && printf "$1" > {lock}/info && '
            f"echo $$ > {lock}/pid.new && sleep 60; true"
        )
        info = f"op={op}\napp={app}\nwho=x\njob=fake\n"
        fake = subprocess.Popen(
            sandbox.netns_exec_argv(self.server(name), ["sh", "-c", script, "pgmam-fake-job", info]),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 10
            while not (holder := self.on(name, "cat", f"{lock}/pid.new", check=False).stdout.strip()):
                assert time.monotonic() < deadline, "the fake job never showed up"
                time.sleep(0.1)
            self.on(name, "mv", f"{lock}/pid.new", f"{lock}/pid")
            yield int(holder)
        finally:
            os.killpg(fake.pid, signal.SIGKILL)
            fake.wait()
            self.on(name, "rm", "-rf", lock)

    def backup_info(self, name: str, app: str) -> dict:
        argv = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={app}", "--output=json", "info"]
        return json.loads(self.on(name, "sh", "-c", 'cd /tmp && exec "$@"', "sh", *argv).stdout)[0]


@pytest.fixture(scope="module")
def box(request: pytest.FixtureRequest) -> Iterator[Box]:
    """A fresh sandbox per test module: what one module leaves behind never colours another's status."""
    sandbox.down(STATE_DIR, naming=NAMING)
    servers = getattr(request.module, "SERVERS", 2)
    systemd = getattr(request.module, "SYSTEMD_SERVERS", True)
    created = sandbox.up(servers, STATE_DIR, naming=NAMING, systemd=systemd, s3=getattr(request.module, "S3", False))
    try:
        yield Box(created)
    finally:
        if not os.environ.get("PGMAM_IT_KEEP"):  # keep it to look around after a failure
            sandbox.down(STATE_DIR, naming=NAMING)


def run_inv(
    *args: str, inventory: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it: `inv ...` in the checkout, against the given inventory."""
    full_env = {**os.environ, "PGMAM_HOSTS": str(inventory), "COLUMNS": "200", **(env or {})}
    full_env.pop("PGMAM_SUDO_PASSWORD", None) if env is None or "PGMAM_SUDO_PASSWORD" not in env else None
    done = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    check_status_json(args, done)
    return done


@functools.cache
def status_validator() -> jsonschema.Draft202012Validator:
    """docs/reference/status.schema.json, read once per test run."""
    schema = json.loads(STATUS_SCHEMA.read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def check_status_json(args: tuple[str, ...], done: subprocess.CompletedProcess[str]) -> None:
    """Every `inv status --json` a test runs must write what the schema describes (exit 0: healthy,
    1: something needs attention). Exit 1 with nothing on stdout is a refusal at the edge: no document."""
    if not args or args[0] != "status" or "--json" not in args or done.returncode not in (0, 1):
        return
    if done.returncode == 1 and not done.stdout.strip():
        return
    command = f"inv {' '.join(args)} (exit {done.returncode})"
    try:
        document = json.loads(done.stdout)
    except ValueError as exc:
        raise AssertionError(f"{command} wrote no JSON document: {exc}\n{done.stdout}{done.stderr}") from None
    errors = sorted(status_validator().iter_errors(document), key=lambda e: e.json_path)
    if errors:
        found = "\n".join(f"  {e.json_path}: {e.message}" for e in errors)
        raise AssertionError(f"{command}: output does not match {STATUS_SCHEMA.relative_to(REPO)}:\n{found}")


@pytest.fixture(scope="module")
def inv(box: Box):
    def call(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("inventory", box.inventory)
        return run_inv(*args, **kwargs)

    return call
