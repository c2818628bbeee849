"""Figures for off-host repos: backup times, WAL lag under load, and `inv recover` of a lost server.

Its own sandbox of three servers: sbx1 runs two apps of ~500 MB each (pgbench scale 35 unless
--scale), sbx3 is the repository host of repo vault, sbx2 is the server they are recovered onto.
1. Quiet: `inv backup --type full` into the local repo, then `inv backup --repo vault --type full`
   (taken on sbx3, reading over SSH), for app one.
2. Under steady pgbench writes on both apps (--seconds, 4 clients each, rate-limited): the WAL
   waiting for vault, as `inv status --json` reports it, sampled every 5 s; then, after the
   writes, how long until everything archived locally is in vault.
3. Raw `pgbackrest restore` of each app on sbx2 from sbx1's place in vault (the floor), removed again.
4. sbx1 lost under writes (`inv sandbox.lose`), then `inv recover --all-apps` onto sbx2: its time
   against the raw restores, and the data lost (the newest commit restored vs the moment of loss).
With --s3, the sandbox also runs its S3 server and sbx1 keeps its apps in repo bucket too: a full
backup into the bucket is timed in step 1, and step 2 samples the WAL waiting for each repo.
Prints the figures; tears down. Needs root.
Usage: python3 bench/offsite.py [--scale N] [--seconds N] [--s3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pgmam_sandbox as sandbox  # noqa: E402

NAMING = sandbox.SandboxNaming(
    netns_prefix="pgmam-bo",
    link_prefix="pgmbo",
    subnet="10.213.8.0/24",
    login_user="pgmambo",
    sudo_password_user="pgmambopw",
)
STATE_DIR = sandbox.state_dir_for(".sandbox-bench-offsite")
APPS = {"one": 5433, "two": 5434}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=35, help="pgbench scale per app (35 is about 500 MB)")
    parser.add_argument("--seconds", type=int, default=60, help="how long the steady writes run")
    parser.add_argument("--s3", action="store_true", help="also keep the apps in the sandbox's S3 bucket")
    args = parser.parse_args()
    sandbox.down(STATE_DIR, naming=NAMING)
    box = sandbox.up(3, STATE_DIR, naming=NAMING, s3=args.s3)
    config = Path(tempfile.mkdtemp(prefix="pgmam-bench-"))
    try:
        run(box, args, config)
    finally:
        sandbox.down(STATE_DIR, naming=NAMING)
        for f in config.glob("*"):
            f.unlink()
        config.rmdir()


def run(box: sandbox.Sandbox, args: argparse.Namespace, config: Path) -> None:
    servers = {s.name: s for s in box.servers}
    text = box.inventory.read_text().replace("[defaults]\n", '[defaults]\nrepos = ["vault"]\n', 1)
    text = text.replace("[hosts.sbx3]\n", "[hosts.sbx3]\nrepos = []\n", 1)
    if args.s3:
        text = text.replace("[hosts.sbx1]\n", '[hosts.sbx1]\nrepos = ["vault", "bucket"]\n', 1)
    box.inventory.write_text(text + '\n[repos.vault]\ntype = "host"\nhost = "sbx3"\n')
    env = {**os.environ, "PGMAM_HOSTS": str(box.inventory), "PGMAM_CONFIG_DIR": str(config)}
    if args.s3:
        env.update(sandbox.s3_env(box.state_dir))

    def on(server: str, *argv: str) -> str:
        done = subprocess.run(sandbox.netns_exec_argv(servers[server], list(argv)), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{server}: {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    def postgres(server: str, *argv: str) -> str:
        return on(server, "sh", "-c", 'cd /tmp && exec runuser -u postgres -- "$@"', "sh", *argv)

    def sql(server: str, port: int, query: str) -> str:
        return postgres(server, "psql", "-XAtq", "-p", str(port), "-c", query)

    def inv(*argv: str) -> tuple[float, str, str]:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *argv], cwd=REPO, env=env, capture_output=True, text=True
        )
        if done.returncode not in (0, 1) or (done.returncode == 1 and argv[0] != "status"):
            raise SystemExit(f"inv {' '.join(argv)} failed:\n{done.stderr}")
        return time.monotonic() - started, done.stdout, done.stderr

    def pgbench_writers(clients: int, rate: int, seconds: int) -> list[subprocess.Popen[bytes]]:
        """Steady writes on both apps, rate-limited, in the background."""
        argv = ["runuser", "-u", "postgres", "--", "pgbench", "-c", str(clients), "-R", str(rate), "-T", str(seconds)]
        return [
            subprocess.Popen(
                sandbox.netns_exec_argv(servers["sbx1"], [*argv, "-p", str(port), "postgres"]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in APPS.values()
        ]

    for app, port in APPS.items():
        inv("initcluster", "--host", "sbx1", "--app", app, "--port", str(port))
        postgres("sbx1", "pgbench", "-p", str(port), "-i", "-q", "-s", str(args.scale), "postgres")
    size = int(sql("sbx1", APPS["one"], "select pg_database_size('postgres')"))
    sql("sbx1", APPS["one"], "checkpoint")
    local, *_ = inv("backup", "--host", "sbx1", "--app", "one", "--type", "full")
    sql("sbx1", APPS["one"], "checkpoint")
    offsite, *_ = inv("backup", "--host", "sbx1", "--app", "one", "--repo", "vault", "--type", "full")
    inv("backup", "--host", "sbx1", "--app", "two", "--repo", "vault", "--type", "full")
    bucket = None
    if args.s3:
        sql("sbx1", APPS["one"], "checkpoint")
        bucket, *_ = inv("backup", "--host", "sbx1", "--app", "one", "--repo", "bucket", "--type", "full")
        inv("backup", "--host", "sbx1", "--app", "two", "--repo", "bucket", "--type", "full")

    # 2. steady writes: the WAL waiting for vault, as status reports it
    writers = pgbench_writers(clients=4, rate=200, seconds=args.seconds)
    lags: dict[str, list[int]] = {}
    while any(w.poll() is None for w in writers):
        _, out, _ = inv("status", "--host", "sbx1", "--json")
        for cluster in json.loads(out)["hosts"][0]["clusters"]:
            for r in cluster["offsite"]:
                if r.get("waiting"):
                    lags.setdefault(r["repo"], []).append(int(r["waiting"]["lag_seconds"]))
        time.sleep(5)
    segments = []
    for port in APPS.values():
        segments.append(sql("sbx1", port, "select pg_walfile_name(pg_switch_wal())"))
    started = time.monotonic()
    caught_up = None
    while caught_up is None and time.monotonic() - started < 300:
        maxes = [
            json.loads(
                postgres(
                    "sbx3",
                    "pgbackrest",
                    "--config-path=/etc/pgbackrest/pgmam/hosts/sbx1",
                    f"--stanza={app}",
                    "--output=json",
                    "info",
                )
            )[0]["archive"][0]["max"]
            for app in APPS
        ]
        if all(m >= s for m, s in zip(maxes, segments, strict=True)):
            caught_up = time.monotonic() - started
        time.sleep(1)

    # 3. raw restores from vault on sbx2: the floor for recover
    raw = {}
    on("sbx2", "install", "-d", "-o", "postgres", "-g", "postgres", "/var/lib/pgmam-bench")
    conf = "/tmp/pgmam-bench-vault.conf"
    conf_text = (
        "[global]\nrepo1-host=" + servers["sbx3"].address + "\nrepo1-host-user=postgres\n"
        "repo1-host-config-path=/etc/pgbackrest/pgmam/hosts/sbx1\nlog-level-console=warn\nlog-level-file=off\n"
    )
    # keys: an inv initcluster on sbx2 sets up postgres's SSH both ways with sbx3
    inv("initcluster", "--host", "sbx2", "--app", "warmup", "--port", "5499")
    inv("dropcluster", "--host", "sbx2", "--app", "warmup", "--yes", "--purge-backups")
    on("sbx2", "sh", "-c", f"printf '%s' '{conf_text}' > {conf} && chmod 644 {conf}")
    for app in APPS:
        target = f"/var/lib/pgmam-bench/{app}"
        t0 = time.monotonic()
        postgres("sbx2", "pgbackrest", f"--config={conf}", f"--stanza={app}", f"--pg1-path={target}", "restore")
        raw[app] = time.monotonic() - t0
        on("sbx2", "rm", "-rf", target)

    # 4. the server is lost under writes; recover
    writers = pgbench_writers(clients=2, rate=100, seconds=600)
    time.sleep(20)
    lost_at = datetime.now(UTC)
    sandbox.lose(servers["sbx1"])
    for w in writers:
        w.kill()
        w.wait()
    recover_s, _, said = inv("recover", "--host", "sbx2", "--from", "sbx1", "--repo", "vault", "--all-apps", "--yes")
    serving = {m[0]: float(m[1]) for m in re.findall(r"(\w+): port \d+, serving after ([\d.]+) s", said)}
    rpo = {}
    for app, port in APPS.items():
        # the newest commit restored: pgbench_history's newest row
        newest = sql("sbx2", port, "select extract(epoch from max(mtime)) from pgbench_history")
        rpo[app] = lost_at.timestamp() - float(newest) if newest else None

    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; pgbench scale {args.scale} per app"
    )
    print(f"app one: {size / 1e6:.0f} MB")
    print(f"full backup, local repo:            {local:6.1f} s")
    print(f"full backup, vault (repo host):     {offsite:6.1f} s   ({offsite / local:.2f}x local)")
    if bucket is not None:
        print(f"full backup, bucket (S3):           {bucket:6.1f} s   ({bucket / local:.2f}x local)")
    for repo, seen in lags.items():
        print(
            f"WAL waiting for {repo} under writes: max {max(seen)} s, mean {sum(seen) / len(seen):.1f} s "
            f"({len(seen)} samples over {args.seconds} s)"
        )
    print(
        f"after the writes, vault caught up in {caught_up:.1f} s" if caught_up is not None else "vault did not catch up"
    )
    each = ", ".join(f"{a} {s:.1f} s" for a, s in raw.items())
    print(f"raw pgbackrest restores from vault: {sum(raw.values()):6.1f} s ({each})")
    for app, seconds in serving.items():
        print(f"  {app}: serving after {seconds:.1f} s of its recover job ({seconds / raw[app]:.2f}x its raw restore)")
    print(f"inv recover --all-apps:             {recover_s:6.1f} s   ({recover_s / sum(raw.values()):.2f}x raw)")
    print("\n".join(line for line in said.splitlines() if line.startswith("  ")))
    print(
        "data lost (loss time - newest commit restored): "
        + ", ".join(f"{a} {r:.1f} s" if r is not None else f"{a} ?" for a, r in rpo.items())
    )


if __name__ == "__main__":
    main()
