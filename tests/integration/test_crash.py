"""Power cuts and signals in the middle of a pitr, on systemd servers.

The power is cut while the job runs a given step (every process of the server killed at once,
/run and /tmp lost), then the server boots by itself. With nobody running pgmam, the app must be
online with its pre-restore data (the job undone at boot, before the cluster starts) or with its
target data (the job had passed its commit point), with no staging copy left and its lock free.
The other app on the server never notices. SIGTERM (a stop) undoes the job before it exits; a
SIGKILL is cleaned up by the next pgmam command on that app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import pgmam_sandbox as sandbox

from .conftest import REPO

PG = "/var/lib/postgresql/15"
JOBS = "/var/lib/pgmam/jobs"
ROWS = "select count(*) from t"
NOW_UTC = "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
S, APP, PORT = "sbx1", "cr_shop", 5801
OTHER, OTHER_PORT = "cr_other", 5802
# The pitr's 13 steps: a cut while each of them runs. Step 12 (the app accepts writes on its new
# timeline) is the commit point; 13 is the backup on the new timeline.
PITR_STEPS = range(1, 14)
COMMIT_STEP = 12


@pytest.fixture(scope="module")
def apps(box, inv):
    for app, port in ((APP, PORT), (OTHER, OTHER_PORT)):
        out = inv("initcluster", "--host", S, "--app", app, "--port", str(port))
        assert out.returncode == 0, out.stdout + out.stderr
        box.psql(S, port, "create table t (id int primary key); insert into t select generate_series(1, 100)")
    return box


def journal_path(box, job: str):
    return box.server(S).root / JOBS.lstrip("/") / job / "journal"


def newest_job(box, op: str, app: str) -> str | None:
    jobs_dir = box.server(S).root / JOBS.lstrip("/")
    names = sorted(p.name for p in jobs_dir.glob(f"{op}-{app}-2*")) if jobs_dir.exists() else []
    return names[-1] if names else None


def wait_for_step(box, before: str | None, step: int, timeout: float = 120, op: str = "pitr", app: str = APP) -> str:
    """Poll the job's journal through the server's files (fast, no SSH) until step N started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = newest_job(box, op, app)
        if job and job != before:
            try:
                text = journal_path(box, job).read_text()
            except OSError:
                text = ""
            if f" start {step} " in text:
                return job
            if " end " in text:
                raise AssertionError(f"the job ended before step {step}:\n{text}")
        time.sleep(0.01)
    raise AssertionError(f"step {step} never started")


def wait_online(box, app: str = APP, port: int = PORT, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while f"15 {app} {port} online" not in box.clusters(S):
        assert time.monotonic() < deadline, f"{app} not online after the boot: {box.clusters(S)}"
        time.sleep(0.5)


def leftovers(box) -> list[str]:
    names = box.on(S, "ls", "-1", PG).stdout.split()
    return [n for n in names if n.startswith((f"staging-{APP}-", f"failed-{APP}-"))]


def last_started(box, job: str) -> str:
    starts = [line.split()[2] for line in journal_path(box, job).read_text().splitlines() if " start " in line]
    return starts[-1]


def job_result(box, job: str) -> str:
    text = journal_path(box, job).read_text()
    ends = [line.split()[2] for line in text.splitlines() if line.split()[1:2] == ["end"]]
    return ends[-1] if ends else "none"


def start_inv(box, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "invoke", *args]
    env = {**os.environ, "PGMAM_HOSTS": str(box.inventory), "COLUMNS": "200"}
    quiet = subprocess.DEVNULL
    return subprocess.Popen(argv, cwd=REPO, env=env, stdin=quiet, stdout=quiet, stderr=quiet, text=True)


def interrupted(box, op: str, step: int, interrupt, *args: str, job_op: str | None = None, job_app: str = APP) -> str:
    """`inv OP --host S --app APP ARGS`, and ``interrupt(job)`` while its job runs STEP; returns the job.

    The job is a JOB_OP (default: OP) of JOB_APP."""
    job_op = job_op or op
    previous = newest_job(box, job_op, job_app)
    client = start_inv(box, op, "--host", S, "--app", APP, *args)
    try:
        job = wait_for_step(box, previous, step, op=job_op, app=job_app)
        freeze_runner(box, job)
        interrupt(job)
    finally:
        client.kill()
        client.wait()
    return job


def freeze_runner(box, job: str) -> None:
    """Hold the job's runner where it is (SIGSTOP), so that what comes next lands during this step.

    The step's own command runs on. A signal from systemd wakes the runner (systemd sends SIGCONT
    with it); a power cut or SIGKILL needs no waking."""
    pid = (box.server(S).root / JOBS.lstrip("/") / job / "pid").read_text().strip()
    box.on(S, "kill", "-STOP", pid)


def interrupt_pitr(box, step: int, interrupt) -> tuple[str, str]:
    """A pitr of APP to a moment before one more row was written, interrupted while it runs STEP.

    Returns (the job's id, the row count before the pitr)."""
    before_rows = box.psql(S, PORT, ROWS)
    target = box.psql(S, PORT, NOW_UTC)
    time.sleep(0.3)
    box.psql(S, PORT, "insert into t select max(id) + 1 from t")  # after the target: pre-restore data only
    return interrupted(box, "pitr", step, interrupt, "--to", target, "--yes"), before_rows


def app_status(inv, app: str = APP) -> dict:
    status = json.loads(inv("status", "--host", S, "--json").stdout)
    return next(c for c in status["hosts"][0]["clusters"] if c["app"] == app)


def power_cut(box):
    return lambda job: sandbox.reboot(box.server(S), power_cut=True)


@pytest.mark.parametrize("step", PITR_STEPS, ids=[f"step{n}" for n in PITR_STEPS])
def test_power_cut_during_a_pitr(apps, inv, step):
    box = apps
    # after the previous test's boot the other app may still be starting (its own crash recovery)
    wait_online(box, OTHER, OTHER_PORT)
    other_rows = box.psql(S, OTHER_PORT, ROWS)
    job, before_rows = interrupt_pitr(box, step, power_cut(box))
    wait_online(box)
    wait_online(box, OTHER, OTHER_PORT)
    rows = box.psql(S, PORT, ROWS)
    result = job_result(box, job)
    # past the commit point only once its step is journaled ok (a cut may land just after that)
    committed = f" ok {COMMIT_STEP}\n" in journal_path(box, job).read_text()
    assert committed == (step > COMMIT_STEP) or step == COMMIT_STEP
    if committed:  # kept: the app runs on the restored data, only the backup after it did not run
        assert result == "interrupted" and rows == before_rows, (result, rows)
    else:  # undone: the app's data from before the pitr
        assert result == "recovered" and rows == str(int(before_rows) + 1), (result, rows)
    assert leftovers(box) == []
    assert box.on(S, "test", "-e", f"/var/lib/pgmam/locks/{APP}", check=False).returncode == 1
    assert box.psql(S, OTHER_PORT, ROWS) == other_rows
    cluster = app_status(inv)
    assert cluster["last_job"]["result"] == result
    assert cluster["status"] == "online"


def test_a_clean_reboot_during_the_swap_undoes_the_pitr_before_the_server_goes_down(apps, inv):
    """At shutdown systemd stops the job before the clusters: it undoes itself, and the boot starts the app."""
    box = apps
    job, before_rows = interrupt_pitr(box, 10, lambda job: sandbox.reboot(box.server(S)))
    wait_online(box)
    journal = journal_path(box, job).read_text()
    assert job_result(box, job) == "rolled-back", journal
    # either the stop reached the job between two steps, or the next step found systemd shutting down
    assert "stopped_by=SIGTERM" in journal or "is destructive" in journal, journal
    assert box.psql(S, PORT, ROWS) == str(int(before_rows) + 1)
    # as after any failure past the swap, the restored copy is kept aside (failed-*), listed as kept
    (kept,) = [name for name in leftovers(box) if name.startswith(f"failed-{APP}-")]
    assert not [name for name in leftovers(box) if name.startswith(f"staging-{APP}-")]
    assert [p["kind"] for p in app_status(inv)["preserved"] if p["name"] == kept] == ["failed"]
    box.on(S, "rm", "-rf", "--", f"{PG}/{kept}")  # the next tests expect none


def test_sigterm_undoes_a_running_pitr(apps, inv):
    box = apps
    # systemctl stop waits until the job has exited
    job, before_rows = interrupt_pitr(box, 4, lambda job: box.on(S, "systemctl", "stop", f"pgmam-{job}.service"))
    assert job_result(box, job) == "rolled-back"
    assert "stopped_by=SIGTERM" in journal_path(box, job).read_text()
    assert box.psql(S, PORT, ROWS) == str(int(before_rows) + 1)
    assert leftovers(box) == []


def test_sigkill_is_cleaned_up_by_the_next_command(apps, inv):
    box = apps
    kill = ["systemctl", "kill", "--signal=SIGKILL"]
    job, _ = interrupt_pitr(box, 3, lambda job: box.on(S, *kill, f"pgmam-{job}.service"))
    # status says so at once: the job, its step, what it left
    problems = app_status(inv)["problems"]
    step = last_started(box, job)  # 3, or 4 if step 3 ended just before the kill
    died = [p for p in problems if p.startswith(f"job {job} died at step {step} ")]
    assert died and f"staging-{APP}-" in died[0] and "the next pgmam command" in died[0], problems
    # the staging copy is left until the next pgmam command on the app, which cleans up first
    out = inv("backup", "--host", S, "--app", APP)
    assert out.returncode == 0, out.stdout + out.stderr
    assert job_result(box, job) == "recovered"
    assert leftovers(box) == []
    assert f"15 {APP} {PORT} online" in box.clusters(S)


def test_a_pitr_killed_mid_swap_is_undone_by_the_next_pitr_which_then_runs(apps, inv):
    """Killed with the app stopped and its data moved aside: the next command must not plan on that."""
    box = apps
    kill = ["systemctl", "kill", "--signal=SIGKILL"]
    job, before_rows = interrupt_pitr(box, 10, lambda job: box.on(S, *kill, f"pgmam-{job}.service"))
    assert f"15 {APP} {PORT} online" not in box.clusters(S)  # stopped, mid-swap
    target = box.psql(S, OTHER_PORT, NOW_UTC)  # any moment after the row written for the first pitr
    out = inv("pitr", "--host", S, "--app", APP, "--to", target, "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert job_result(box, job) == "recovered"
    assert box.psql(S, PORT, ROWS) == str(int(before_rows) + 1)
    assert [n for n in leftovers(box) if n.startswith(f"staging-{APP}-")] == []


def cut_during(box, op: str, step: int, *args: str) -> str:
    """Run `inv OP ARGS`, cut the power while its job runs STEP; returns the job's id."""
    job = interrupted(box, op, step, power_cut(box), *args)
    wait_online(box)
    return job


# a drill's steps: 1 restore the copy, 3 replay WAL in the throwaway instance, 4 examine it
@pytest.mark.parametrize("step", [1, 3, 4], ids=["restore", "replay", "examine"])
def test_power_cut_during_a_restore_drill_leaves_nothing_and_records_no_failure(apps, inv, step):
    box = apps
    rows = box.psql(S, PORT, ROWS)
    job = cut_during(box, "verify", step)
    assert job_result(box, job) == "recovered"
    assert [n for n in box.on(S, "ls", "-1", PG).stdout.split() if n.startswith(f"verify-{APP}-")] == []
    assert box.psql(S, PORT, ROWS) == rows
    assert app_status(inv)["problems"] == []  # an interrupted drill is not a failed drill


# a rollback's steps: 2 preserve the live data, 3 move the preserved dir in, 5 start it (it promotes)
@pytest.mark.parametrize("step", [2, 3, 5], ids=["preserve", "move-in", "start"])
def test_power_cut_during_a_rollback_swap(apps, inv, step):
    box = apps

    def kept_dirs() -> list[str]:
        return sorted(n for n in box.on(S, "ls", "-1", PG).stdout.split() if n.startswith(f"old-{APP}-"))

    if not kept_dirs():  # a finished pitr preserves the data it replaced: something to roll back to
        target = box.psql(S, PORT, NOW_UTC)
        time.sleep(0.3)
        out = inv("pitr", "--host", S, "--app", APP, "--to", target, "--yes")
        assert out.returncode == 0, out.stdout + out.stderr
    rows = box.psql(S, PORT, ROWS)
    kept = kept_dirs()
    job = cut_during(box, "rollback", step, "--yes")
    assert job_result(box, job) == "recovered"
    assert box.psql(S, PORT, ROWS) == rows  # the data from before the rollback
    assert kept_dirs() == kept  # the preserved dir went back where it was, nothing new is kept
    assert leftovers(box) == []


def test_power_cut_during_a_branch_sync_swap(apps, inv):
    box = apps
    branch, port = f"{APP}_dev", 5803
    out = inv("branch", "--host", S, "--app", APP, "--name", "dev", "--port", str(port), "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    box.psql(S, port, "insert into t select max(id) + 1000 from t")  # the branch's own work
    rows = box.psql(S, port, ROWS)
    # step 9: its restored copy moving in; the job is a "sync" of the branch
    args = ("--name", "dev", "--sync", "--yes")
    job = interrupted(box, "branch", 9, power_cut(box), *args, job_op="sync", job_app=branch)
    wait_online(box, branch, port)
    assert job_result(box, job) == "recovered"
    assert box.psql(S, port, ROWS) == rows  # the branch as it was before the sync
    names = box.on(S, "ls", "-1", PG).stdout.split()
    assert not [n for n in names if n.startswith((f"staging-{branch}-", f"failed-{branch}-"))]


def test_power_cut_during_a_backup_leaves_the_app_alone_and_the_next_backup_works(apps, inv):
    box = apps
    rows = box.psql(S, PORT, ROWS)
    backups = len(box.backup_info(S, APP)["backup"])
    job = cut_during(box, "backup", 1, "--type", "full")  # pgBackRest is copying the data dir
    assert job_result(box, job) == "recovered"
    assert box.psql(S, PORT, ROWS) == rows
    out = inv("backup", "--host", S, "--app", APP, "--type", "full")
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(box.backup_info(S, APP)["backup"]) == backups + 1  # the interrupted one never counts
    assert app_status(inv)["problems"] == []


def test_power_cut_during_an_initcluster_and_the_same_command_finishes_it(apps, inv):
    """The boot finishes the interrupted initcluster job (nothing in it to undo); running the same
    command again does what is still missing."""
    box = apps
    app, port = "cr_new", 5804
    client = start_inv(box, "initcluster", "--host", S, "--app", app, "--port", str(port))
    stanza = box.server(S).root / "var/lib/pgbackrest/backup" / app  # made by its stanza-create step
    try:
        deadline = time.monotonic() + 120
        while not stanza.exists():
            assert time.monotonic() < deadline and client.poll() is None, "initcluster never created its stanza"
            time.sleep(0.01)
        sandbox.reboot(box.server(S), power_cut=True)
    finally:
        client.kill()
        client.wait()
    wait_online(box, app, port)  # its start.conf says auto: systemd starts it at boot
    out = inv("initcluster", "--host", S, "--app", app, "--port", str(port))
    assert out.returncode == 0, out.stdout + out.stderr
    cluster = app_status(inv, app)
    assert cluster["problems"] == [] and cluster["backup_count"] >= 1
