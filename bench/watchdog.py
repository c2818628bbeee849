"""Figures for the watchdog: one run's wall time and CPU with 10 apps on one server, and the time
from breaking WAL archiving to the alert reaching a webhook receiver, at the default interval.

Runs the real CLI (`inv ...`) against its own sandbox (own names and subnet), with a receiver on
the sandbox's bridge; prints the figures and tears the sandbox down. Needs root. Bounded: 10
apps, RUNS runs, ALERT_SAMPLES alerts of at most one interval (5 min) each.
Usage: python3 bench/watchdog.py [--alerts N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pgmam_sandbox as sandbox  # noqa: E402
from pgmam_sandbox.receiver import Receiver  # noqa: E402

NAMING = sandbox.SandboxNaming(
    netns_prefix="pgmam-bw",
    link_prefix="pgmbw",
    subnet="10.213.6.0/24",
    login_user="pgmambw",
    sudo_password_user="pgmambwpw",
)
STATE_DIR = sandbox.state_dir_for(".sandbox-bench-watchdog")
APPS = 10
RUNS = 10
ALERT_SAMPLES = 1
ALERT_TIMEOUT_S = 420  # the default interval (300 s), the run, and slack


def inv(*args: str, inventory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGMAM_HOSTS": str(inventory)}
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{done.stderr}")
    return done


def psql(box: sandbox.Sandbox, port: int, sql: str) -> str:
    argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(port), "-c", sql]
    return subprocess.run(
        sandbox.netns_exec_argv(box.servers[0], argv), capture_output=True, text=True, check=True
    ).stdout.strip()


def on(box: sandbox.Sandbox, *argv: str) -> str:
    return subprocess.run(
        sandbox.netns_exec_argv(box.servers[0], list(argv)), capture_output=True, text=True, check=True
    ).stdout


SPAN_UNITS = {
    "y": 31557600,
    "month": 2629800,
    "w": 604800,
    "d": 86400,
    "h": 3600,
    "min": 60,
    "s": 1,
    "ms": 1e-3,
    "us": 1e-6,
}


def next_run_in(box: sandbox.Sandbox) -> float:
    """Seconds until the timer fires next: systemd shows when as a span of the monotonic clock
    ("16h 7min 58.609104s"), which the sandbox servers share with this machine."""
    shown = on(box, "systemctl", "show", "pgmam-watchdog.timer", "-p", "NextElapseUSecMonotonic", "--value")
    due = sum(float(n) * SPAN_UNITS[unit] for n, unit in re.findall(r"([\d.]+)(month|min|ms|us|y|w|d|h|s)", shown))
    return due - time.monotonic()


def wait_for_a_timer_run(box: sandbox.Sandbox) -> None:
    """Until the timer has just run and its next run is a whole interval away (its first runs, 10 s
    after it is set up and 2 min after boot, come sooner)."""
    while True:
        last = on(box, "cat", "/var/lib/pgmam/watchdog/last.json")
        while on(box, "cat", "/var/lib/pgmam/watchdog/last.json") == last:
            time.sleep(0.5)
        if next_run_in(box) > 250:
            return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=ALERT_SAMPLES, help="alert latency samples (<= 5 min each)")
    args = parser.parse_args()
    sandbox.down(STATE_DIR, naming=NAMING)
    box = sandbox.up(1, STATE_DIR, naming=NAMING)
    try:
        print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}")
        ports = [5450 + i for i in range(APPS)]
        for port in ports:
            inv("initcluster", "--host", "sbx1", "--app", f"w{port}", "--port", str(port), inventory=box.inventory)
        receiver = Receiver(str(NAMING.bridge_address), "/hook/bench")
        inventory = box.inventory.with_name("hosts-watch.toml")
        inventory.write_text(box.inventory.read_text() + f'\n[notify]\nwebhook = "{receiver.url}"\n')
        inv("watchdog", "--host", "sbx1", inventory=inventory)

        walls, cpus = [], []
        for _ in range(RUNS):
            on(box, "systemctl", "start", "pgmam-watchdog.service")
            record = json.loads(on(box, "cat", "/var/lib/pgmam/watchdog/last.json"))
            assert record["error"] is None, record["error"]
            walls.append(record["seconds"])
            cpus.append(record["cpu_seconds"])
        print(
            f"one run, {APPS} apps: wall median {statistics.median(walls):.2f} s (max {max(walls):.2f}), "
            f"CPU median {statistics.median(cpus):.2f} s (max {max(cpus):.2f}) (target: CPU < 1 s)"
        )

        # The worst case: archiving breaks right after a run, so the alert waits a whole interval
        # for the next one. Each sample waits for the timer's own run first (about 5 min).
        latencies = []
        port = ports[0]
        for sample in range(args.alerts):
            receiver.bodies.clear()
            wait_for_a_timer_run(box)
            broken = time.time()
            psql(box, port, "alter system set archive_command = '/bin/false'")
            psql(box, port, "select pg_reload_conf()")
            psql(box, port, "create table if not exists t(x int); insert into t values (1)")
            psql(box, port, "select pg_switch_wal()")
            arrived = receiver.wait("unhealthy", ALERT_TIMEOUT_S)["arrived"]
            latencies.append(arrived - broken)
            print(f"alert {sample + 1}: {arrived - broken:.1f} s after archiving broke, right after a run", flush=True)
            psql(box, port, "alter system reset archive_command")
            psql(box, port, "select pg_reload_conf()")
            psql(box, port, "select pg_switch_wal()")
            while not any(b["event"] == "recovered" for b in receiver.bodies):
                time.sleep(2)
                on(box, "systemctl", "start", "pgmam-watchdog.service")
        if latencies:
            print(
                f"breaking archiving -> alert, worst case: {max(latencies):.1f} s "
                f"({len(latencies)} samples; the interval is 300 s: on average an alert waits half of it)"
            )
    finally:
        sandbox.down(STATE_DIR, naming=NAMING)


if __name__ == "__main__":
    main()
