"""Figures for the foundation: initcluster wall time, status on 1, 8 and 32 servers.

Runs the real CLI (`inv ...`) against its own sandbox (own names and subnet,
so it never touches a rehearsal or test sandbox), prints the figures and tears
the sandbox down. Needs root. Usage: python3 bench/initcluster_status.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pgmam_sandbox as sandbox  # noqa: E402

NAMING = sandbox.SandboxNaming(
    netns_prefix="pgmam-bn",
    link_prefix="pgmbn",
    subnet="10.213.4.0/24",
    login_user="pgmambn",
    sudo_password_user="pgmambnpw",
)
STATE_DIR = sandbox.state_dir_for(".sandbox-bench")
SERVERS = 32
STATUS_SIZES = (1, 8, 32)
INIT_RUNS = 3
STATUS_RUNS = 5


def inv(*args: str, inventory: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PGMAM_HOSTS": str(inventory)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{done.stderr}")
    return elapsed, done


def main() -> None:
    sandbox.down(STATE_DIR, naming=NAMING)
    box = sandbox.up(SERVERS, STATE_DIR, naming=NAMING)
    try:
        print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}")
        init_times = []
        for i in range(INIT_RUNS):
            elapsed, _ = inv(
                "initcluster", "--host", "sbx1", "--app", f"bench{i}", "--port", str(5440 + i), inventory=box.inventory
            )
            init_times.append(elapsed)
            print(f"initcluster run {i + 1}: {elapsed:.2f} s")
        print(f"initcluster wall time: median {statistics.median(init_times):.2f} s (target <= 10 s)")

        def one_app(name: str) -> None:
            inv("initcluster", "--host", name, "--app", "app", "--port", "5433", inventory=box.inventory)

        with ThreadPoolExecutor(4) as pool:  # 2 cores: more only queues
            list(pool.map(one_app, [server.name for server in box.servers[1:]]))

        def status_time(*selector: str) -> tuple[float, list[int]]:
            times, commands = [], []
            for _ in range(STATUS_RUNS):
                elapsed, done = inv("status", *selector, "--json", inventory=box.inventory)
                times.append(elapsed)
                commands = [h["remote_commands"] for h in json.loads(done.stdout)["hosts"]]
            return statistics.median(times), commands

        medians = {}
        for size in STATUS_SIZES:
            selector = [arg for server in box.servers[:size] for arg in ("--host", server.name)]
            medians[size], commands = status_time(*selector)
            print(
                f"status, {size:>2} server(s): median {medians[size]:.2f} s, remote commands per server {set(commands)}"
            )
        for size in STATUS_SIZES[1:]:
            print(f"status ratio {size} vs 1: {medians[size] / medians[1]:.2f}x (target for 32: <= 2x)")
    finally:
        sandbox.down(STATE_DIR, naming=NAMING)


if __name__ == "__main__":
    main()
