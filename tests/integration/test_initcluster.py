"""initcluster over real SSH against sandbox servers: success, re-run, resume, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import pgmam_sandbox as sandbox

from .conftest import REPO


def assert_pitr_ready(box, server: str, app: str, port: int) -> None:
    assert f"15 {app} {port} online" in box.clusters(server)
    assert box.psql(server, port, "show archive_mode") == "on"
    assert box.psql(server, port, "show data_checksums") == "on"
    info = box.backup_info(server, app)
    assert info["status"]["code"] == 0, info["status"]
    assert [b["type"] for b in info["backup"]] == ["full"]
    # archiving really works: pgbackrest check forces a WAL switch and waits for it in the repo
    check = box.on(
        server, "sh", "-c", f"cd /tmp && runuser -u postgres -- pgbackrest --stanza={app} check", check=False
    )
    assert check.returncode == 0, check.stderr


def test_initcluster_on_two_servers_and_rerun_is_a_no_op(box, inv):
    first = inv("initcluster", "--host", "sbx1", "--app", "shop", "--port", "5433")
    assert first.returncode == 0, first.stderr
    assert "shop on sbx1 is PITR-ready" in first.stderr
    assert "restorable from 20" in first.stderr
    # it ran on the server as a job: the app's lock, a journal, an audit line
    audit = box.on("sbx1", "cat", "/var/log/pgmam/audit.log").stdout
    assert any("op=initcluster app=shop " in line and "result=ok" in line for line in audit.splitlines()), audit
    second = inv("initcluster", "--host", "sbx2", "--app", "blog", "--port", "5433")
    assert second.returncode == 0, second.stderr
    assert_pitr_ready(box, "sbx1", "shop", 5433)
    assert_pitr_ready(box, "sbx2", "blog", 5433)
    assert not any(" shop " in c for c in box.clusters("sbx2"))  # servers are isolated

    backups = box.backup_info("sbx1", "shop")["backup"]
    again = inv("initcluster", "--host", "sbx1", "--app", "shop", "--port", "5433")
    assert again.returncode == 0, again.stderr
    assert "already PITR-ready; nothing changed" in again.stderr
    assert box.backup_info("sbx1", "shop")["backup"] == backups


def test_dry_run_prints_commands_and_changes_nothing(box, inv):
    before = (box.clusters("sbx2"), box.config_files("sbx2"))
    out = inv("initcluster", "--host", "sbx2", "--app", "drydock", "--port", "5470", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "pg_createcluster --port 5470 --start-conf auto 15 drydock -- --data-checksums" in out.stdout
    assert "pgbackrest --stanza=drydock --type=full backup" in out.stdout
    assert (box.clusters("sbx2"), box.config_files("sbx2")) == before


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        # a few end to end; every refusal runs in-process on a recorded server in tests/unit/test_refusals.py
        (["--app", "Bad-Name", "--port", "5480"], 1, "app name 'Bad-Name' is not allowed"),
        (["--app", "taken", "--port", "5433"], 1, "port 5433 belongs to cluster 15/shop"),
        (["--app", "pg16", "--port", "5481", "--pg-version", "16"], 1, "PostgreSQL 16 is not installed"),
    ],
)
def test_refusals_change_nothing(box, inv, args, code, message):
    if "taken" in args and not any("shop" in c for c in box.clusters("sbx1")):
        assert inv("initcluster", "--host", "sbx1", "--app", "shop", "--port", "5433").returncode == 0
    before = (box.clusters("sbx1"), box.config_files("sbx1"))
    out = inv("initcluster", "--host", "sbx1", *args)
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "hint:" in out.stderr
    assert (box.clusters("sbx1"), box.config_files("sbx1")) == before


def test_refused_when_port_has_a_listener_or_name_is_foreign(box, inv):
    # a cluster pgmam did not make
    box.on("sbx2", "pg_createcluster", "--port", "5490", "15", "legacy")
    # any listening socket inside the server
    listener = subprocess.Popen(
        box_exec(
            box,
            "sbx2",
            # perl: a stock server has it (perl-base), not necessarily python3
            [
                "perl",
                "-MIO::Socket::INET",
                "-e",
                "my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:5491', Listen => 1) or die; sleep 60",
            ],
        )
    )
    try:
        wait_for(lambda: "5491" in box.on("sbx2", "ss", "-Hltn").stdout)
        before = (box.clusters("sbx2"), box.config_files("sbx2"))
        foreign = inv("initcluster", "--host", "sbx2", "--app", "legacy", "--port", "5492")
        assert foreign.returncode == 1 and "not made by pgmam" in foreign.stderr
        used = inv("initcluster", "--host", "sbx2", "--app", "other", "--port", "5491")
        assert used.returncode == 1 and "port 5491 is already in use by a listening socket" in used.stderr
        assert (box.clusters("sbx2"), box.config_files("sbx2")) == before
    finally:
        listener.kill()
        listener.wait()
        box.on("sbx2", "pg_dropcluster", "15", "legacy")


def test_a_killed_client_stops_nothing_and_the_same_command_picks_the_job_up(box, inv):
    """Kill the client in the middle of the first backup (like a dropped link): the job goes on on
    the server, and the same command re-attaches to it (or finds it done) and launches nothing new."""
    argv = [sys.executable, "-m", "invoke", "initcluster", "--host", "sbx1", "--app", "resumed", "--port", "5450"]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**os.environ, "PGMAM_HOSTS": str(box.inventory)},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "first full backup" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert "15 resumed 5450 online" in box.clusters("sbx1")

    out = inv("initcluster", "--host", "sbx1", "--app", "resumed", "--port", "5450")
    assert out.returncode == 0, out.stderr
    assert "re-attaching to /var/lib/pgmam/jobs/initcluster-resumed-" in out.stderr or "nothing changed" in out.stderr
    jobs = box.on("sbx1", "sh", "-c", "ls -d /var/lib/pgmam/jobs/initcluster-resumed-*").stdout.split()
    assert len(jobs) == 1, jobs
    assert_pitr_ready(box, "sbx1", "resumed", 5450)
    assert sum(" resumed " in f" {c} " for c in box.clusters("sbx1")) == 1


def box_exec(box, server: str, argv: list[str]) -> list[str]:
    return sandbox.netns_exec_argv(box.server(server), argv)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
