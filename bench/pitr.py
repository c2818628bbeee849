"""Figures for pitr: downtime and total time, default mode vs --stop-first vs raw pgBackRest.

For each database size (small, and ~1 GB of pgbench data unless --small-only):
  1. a fresh app with pgbench data and a full backup taken after loading it;
  2. more writes, a noted target time T (server clock), more writes;
  3. `inv pitr --to T` (default: restore beside, then swap), then `--stop-first`, then the
     raw baseline: stop, empty the data dir, `pgbackrest restore` to T, start, wait for promotion.
A probe in the server's network connects every 100 ms to the app's port; downtime is the longest
stretch between two successful probes (an upper bound: it includes up to one interval).

Runs against its own sandbox (own names and subnet), prints the figures, tears the sandbox down.
Needs root. Usage: python3 bench/pitr.py [--small-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pgmam_sandbox as sandbox  # noqa: E402

NAMING = sandbox.SandboxNaming(
    netns_prefix="pgmam-bp",
    link_prefix="pgmbp",
    subnet="10.213.6.0/24",
    login_user="pgmambp",
    sudo_password_user="pgmambppw",
)
STATE_DIR = sandbox.state_dir_for(".sandbox-bench-pitr")
PROBE = REPO / "bench" / "probe.py"
PROBE_ROLE = "pgmam_probe"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


class Bench:
    def __init__(self, box: sandbox.Sandbox) -> None:
        self.box = box
        self.server = box.servers[0]

    def on(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(sandbox.netns_exec_argv(self.server, list(argv)), capture_output=True, text=True)
        if check and done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    def psql(self, port: int, sql: str) -> str:
        return self.on("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(port), "-c", sql)

    def inv(self, *args: str) -> float:
        env = {**os.environ, "PGMAM_HOSTS": str(self.box.inventory)}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"inv {' '.join(args)} failed:\n{done.stderr}")
        return time.monotonic() - started

    def probe(self, port: int, seconds: float) -> subprocess.Popen[str]:
        """The probe runs here, in the server's network namespace only: over TCP on its loopback,
        as an application on that server would connect (nothing of this checkout enters the server)."""
        argv = [sys.executable, str(PROBE), "--port", str(port), "--seconds", str(seconds), "--host", "127.0.0.1"]
        env = {**os.environ, "PGUSER": PROBE_ROLE, "PGPASSWORD": PROBE_ROLE}
        # ip netns exec execs the probe: the returned pid is the probe's
        return subprocess.Popen(
            ["ip", "netns", "exec", self.server.netns, *argv], stdout=subprocess.PIPE, text=True, env=env
        )

    def now(self, port: int) -> str:
        return self.psql(port, "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")

    def checksum(self, port: int) -> str:
        return self.psql(port, "select md5(string_agg(md5(a::text), '' order by aid)) from pgbench_accounts a")

    def prepare(self, app: str, port: int, scale: int) -> tuple[str, str]:
        self.inv("initcluster", "--host", "sbx1", "--app", app, "--port", str(port))
        self.psql(port, f"create role {PROBE_ROLE} login password '{PROBE_ROLE}'")  # a throwaway sandbox role
        self.on("runuser", "-u", "postgres", "--", PGBENCH, "-q", "-i", "-s", str(scale), "-p", str(port), "postgres")
        self.on("sh", "-c", f"cd /tmp && runuser -u postgres -- pgbackrest --stanza={app} --type=full backup")
        self.on("runuser", "-u", "postgres", "--", PGBENCH, "-n", "-T", "3", "-c", "2", "-p", str(port), "postgres")
        self.psql(port, "checkpoint")
        target, expected = self.now(port), self.checksum(port)
        time.sleep(1.2)
        self.on("runuser", "-u", "postgres", "--", PGBENCH, "-n", "-T", "3", "-c", "2", "-p", str(port), "postgres")
        return target, expected

    def job_done(self, app: str) -> float:
        """Waits until no job holds the app (pitr returns before its follow-up backup ends)."""
        locked = sandbox.netns_exec_argv(self.server, ["test", "-e", f"/var/lib/pgmam/locks/{app}"])
        while subprocess.run(locked).returncode == 0:
            time.sleep(0.1)
        return time.monotonic()

    def timed(
        self, app: str, port: int, expected: str, action: Callable[[], float]
    ) -> tuple[float, float, float, float]:
        """(seconds until the command returned, downtime, seconds from the start until the restored
        app was reachable again, seconds until its job ended)."""
        probe = self.probe(port, 600)
        time.sleep(1.0)
        started = time.monotonic()
        total = action()
        ended = self.job_done(app) - started
        time.sleep(1.0)
        probe.send_signal(signal.SIGINT)  # nsenter execs the probe: this is its pid
        report = json.loads(probe.communicate(timeout=30)[0])
        got = self.checksum(port)
        if got != expected:
            raise SystemExit(f"data after restore differs from the data at the target ({got} != {expected})")
        return total, report["max_gap_s"], report["gap_end_monotonic"] - started, ended

    def raw_restore(self, app: str, port: int, target: str) -> float:
        """What a user would do by hand: stop, empty, pgbackrest restore to T, start, wait for promotion."""
        started = time.monotonic()
        self.on("pg_ctlcluster", "15", app, "stop")
        data = f"/var/lib/postgresql/15/{app}"
        self.on("find", data, "-mindepth", "1", "-delete")
        self.on(
            "sh",
            "-c",
            f"cd /tmp && runuser -u postgres -- pgbackrest --stanza={app} --type=time '--target={target}' "
            "--target-action=promote --target-timeline=current restore",
        )
        self.on("pg_ctlcluster", "15", app, "start")
        while self.psql(port, "select pg_is_in_recovery()") != "f":
            time.sleep(0.1)
        return time.monotonic() - started


def measure(bench: Bench, label: str, app: str, port: int, scale: int) -> None:
    target, expected = bench.prepare(app, port, scale)
    size = int(bench.psql(port, "select pg_database_size('postgres')"))
    print(f"\n{label}: pgbench scale {scale}, database {size / 1e6:.0f} MB, target {target}")
    rows = []
    for mode, extra in (("default (beside + swap)", []), ("--stop-first", ["--stop-first"])):
        args = ["pitr", "--host", "sbx1", "--app", app, "--to", target, "--yes", *extra]
        rows.append((mode, *bench.timed(app, port, expected, lambda args=args: bench.inv(*args))))
    raw = bench.timed(app, port, expected, lambda: bench.raw_restore(app, port, target))
    rows.append(("raw pgbackrest restore + start", *raw))
    raw_total, raw_online = rows[-1][1], rows[-1][3]
    for mode, total, downtime, online, ended in rows:
        print(
            f"  {mode:32s} returns {total:6.1f} s ({total / raw_total:.2f}x raw)   restored app reachable after "
            f"{online:6.1f} s ({online / raw_online:.2f}x raw)   downtime {downtime:5.2f} s   "
            f"job (with its backup) ends {ended:6.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-only", action="store_true", help="skip the ~1 GB database")
    args = parser.parse_args()
    sandbox.down(STATE_DIR, naming=NAMING)
    box = sandbox.up(1, STATE_DIR, naming=NAMING)
    try:
        print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}")
        bench = Bench(box)
        measure(bench, "small", "small", 5433, 1)
        if not args.small_only:
            measure(bench, "~1 GB", "large", 5434, 70)
    finally:
        sandbox.down(STATE_DIR, naming=NAMING)


if __name__ == "__main__":
    main()
