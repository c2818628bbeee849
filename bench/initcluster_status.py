"""Figures for the foundation: initcluster wall time, status on 1 vs 8 servers.

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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pgmam_remote import sandbox  # noqa: E402

NAMING = sandbox.SandboxNaming(
    netns_prefix="pgmam-bn",
    link_prefix="pgmbn",
    subnet="10.213.4.0/24",
    login_user="pgmambn",
    sudo_password_user="pgmambnpw",
)
STATE_DIR = sandbox.state_dir_for(".sandbox-bench")
SERVERS = 8
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

        for server in box.servers[1:]:
            inv("initcluster", "--host", server.name, "--app", "app", "--port", "5433", inventory=box.inventory)

        def status_time(*selector: str) -> tuple[float, list[int]]:
            times, commands = [], []
            for _ in range(STATUS_RUNS):
                elapsed, done = inv("status", *selector, "--json", inventory=box.inventory)
                times.append(elapsed)
                commands = [h["remote_commands"] for h in json.loads(done.stdout)["hosts"]]
            return statistics.median(times), commands

        one, one_cmds = status_time("--host", "sbx1")
        eight, eight_cmds = status_time("--all-hosts")
        print(f"status, 1 server:  median {one:.2f} s, remote commands per server {one_cmds}")
        print(f"status, {SERVERS} servers: median {eight:.2f} s, remote commands per server {eight_cmds}")
        print(f"status ratio {SERVERS} vs 1: {eight / one:.2f}x (target <= 1.5x)")
    finally:
        sandbox.down(STATE_DIR, naming=NAMING)


if __name__ == "__main__":
    main()
