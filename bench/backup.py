"""Figures for the backup lifecycle: backup times and repository size for ~1 GB, and a drill.

1. An app with ~1 GB of pgbench data (scale 70 unless --scale).
2. Quiet (a checkpoint just before each backup, nothing dirty): `inv backup --type full` with
   pgmam's generated settings vs the same full backup with pgBackRest's defaults (gz, process-max
   1, no start-fast) into a repository of its own, and once more with the defaults plus
   start-fast (to separate the checkpoint wait from compression and parallelism). The defaults'
   runs skip the WAL archive check (WAL is archived into pgmam's repository only), which favours
   them slightly.
3. Live (right after 10 s of pgbench writes, as on a server with traffic): pgmam's full backup vs
   the defaults' one, which has to wait for a spread checkpoint.
4. Writes + `--type diff`, writes + `--type incr`; time and repository size.
5. `inv verify` (a restore drill of the newest backup) time.
Its own sandbox; prints the figures; tears down. Needs root.
Usage: python3 bench/backup.py [--scale N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pgmam_sandbox as sandbox  # noqa: E402

NAMING = sandbox.SandboxNaming(
    netns_prefix="pgmam-bb",
    link_prefix="pgmbb",
    subnet="10.213.7.0/24",
    login_user="pgmambb",
    sudo_password_user="pgmambbpw",
)
STATE_DIR = sandbox.state_dir_for(".sandbox-bench-backup")
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
APP, PORT = "big", 5433


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GB)")
    args = parser.parse_args()
    sandbox.down(STATE_DIR, naming=NAMING)
    box = sandbox.up(1, STATE_DIR, naming=NAMING)
    server = box.servers[0]

    def on(*argv: str) -> str:
        done = subprocess.run(sandbox.netns_exec_argv(server, list(argv)), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    def as_postgres(*argv: str) -> str:
        return on("sh", "-c", 'cd /tmp && exec runuser -u postgres -- "$@"', "sh", *argv)

    def inv(*argv: str) -> float:
        started = time.monotonic()
        env = {**os.environ, "PGMAM_HOSTS": str(box.inventory)}
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *argv], cwd=REPO, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"inv {' '.join(argv)} failed:\n{done.stderr}")
        return time.monotonic() - started

    def timed(*argv: str) -> float:
        started = time.monotonic()
        as_postgres(*argv)
        return time.monotonic() - started

    def repo_size(stanza: str, repo: str | None = None) -> int:
        extra = [f"--repo1-path={repo}"] if repo else []
        info = json.loads(as_postgres("pgbackrest", f"--stanza={stanza}", *extra, "--output=json", "info"))
        return info[0]["backup"][-1]["info"]["repository"]["delta"]

    def writes() -> None:
        as_postgres(PGBENCH, "-n", "-T", "10", "-c", "2", "-p", str(PORT), "postgres")

    try:
        print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}")
        inv("initcluster", "--host", "sbx1", "--app", APP, "--port", str(PORT))
        as_postgres(PGBENCH, "-q", "-i", "-s", str(args.scale), "-p", str(PORT), "postgres")
        size = int(as_postgres("psql", "-XAtq", "-p", str(PORT), "-c", "select pg_database_size('postgres')"))
        print(f"database: pgbench scale {args.scale}, {size / 1e9:.2f} GB")

        def defaults(name: str, extra: list[str]) -> float:
            """A full backup with pgBackRest's defaults into a repository of its own."""
            repo = f"/var/lib/pgbackrest/bench-{name}"  # inside the server's private /var/lib/pgbackrest
            on("install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0750", repo)
            where = [f"--stanza={APP}", f"--repo1-path={repo}"]
            for _ in range(20):  # stanza-create briefly collides with async archive-push's lock
                try:
                    as_postgres("pgbackrest", *where, "stanza-create")
                    break
                except SystemExit:
                    time.sleep(0.5)
            seconds = timed(
                "pgbackrest",
                *where,
                "--compress-type=gz",
                "--process-max=1",
                *extra,
                "--no-archive-check",
                "--type=full",
                "backup",
            )
            print(
                f"  {'defaults ' + ' '.join(extra):34s} full {seconds:6.1f} s   repo "
                f"{repo_size(APP, repo) / 1e6:7.1f} MB"
            )
            return seconds

        print("quiet: nothing written since the last checkpoint")
        as_postgres("psql", "-XAtq", "-p", str(PORT), "-c", "checkpoint")
        full = inv("backup", "--host", "sbx1", "--app", APP, "--type", "full")
        settings = "zst level 1, process-max 2, start-fast"
        print(f"  {'pgmam (inv backup)':34s} full {full:6.1f} s   repo {repo_size(APP) / 1e6:7.1f} MB ({settings})")
        as_postgres("psql", "-XAtq", "-p", str(PORT), "-c", "checkpoint")
        quiet = defaults("quiet", ["--no-start-fast"])
        faster = defaults("quiet-fast", ["--start-fast"])
        print(f"  pgmam is {quiet / full:.1f}x faster than the defaults ({faster / full:.1f}x with start-fast)")

        print("live: right after 10 s of pgbench writes, as on a server with traffic")
        writes()
        live_full = inv("backup", "--host", "sbx1", "--app", APP, "--type", "full")
        print(f"  {'pgmam (inv backup)':34s} full {live_full:6.1f} s   repo {repo_size(APP) / 1e6:7.1f} MB")
        writes()
        live = defaults("live", ["--no-start-fast"])
        print(f"  pgmam is {live / live_full:.1f}x faster than the defaults (they wait for a spread checkpoint)")

        writes()
        diff = inv("backup", "--host", "sbx1", "--app", APP, "--type", "diff")
        print(f"pgmam diff {diff:6.1f} s   repo {repo_size(APP) / 1e6:7.1f} MB (after 10 s of pgbench)")
        writes()
        incr = inv("backup", "--host", "sbx1", "--app", APP, "--type", "incr")
        print(f"pgmam incr {incr:6.1f} s   repo {repo_size(APP) / 1e6:7.1f} MB (after 10 s more)")
        drill = inv("verify", "--host", "sbx1", "--app", APP)
        print(f"restore drill (inv verify) of the newest backup: {drill:.1f} s")
    finally:
        sandbox.down(STATE_DIR, naming=NAMING)


if __name__ == "__main__":
    main()
