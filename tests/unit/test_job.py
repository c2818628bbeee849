"""The server-side job runner, run for real with sh in a temp dir: steps, notes, undo order, lock, audit."""

import os
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgmam_remote.command import Command, sh
from pgmam_remote.facts import JobRecord, ServerFacts
from pgmam_remote.job import JobSpec, parse_journal, render_script
from pgmam_remote.ops.restore import job_stamp
from pgmam_remote.plan import Plan, Step
from pgmam_remote.server_code import SERVER_DIR


def run_job(tmp_path: Path, steps: list[Step], app: str = "shop") -> tuple[str, Path]:
    spec = JobSpec(
        "pitr", app, "pitr-shop-20260101T000000Z", "alice@laptop", {"target": "t"}, Plan("h", "test", tuple(steps))
    )
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "info").write_text(spec.info_text())
    script = job_dir / "job.sh"
    script.write_text(render_script(spec, code_dir=str(SERVER_DIR)))
    env = {**os.environ, "PGMAM_STATE_DIR": str(tmp_path / "state"), "PGMAM_LOG_DIR": str(tmp_path / "log")}
    subprocess.run(["sh", str(script), str(job_dir), app], env=env, check=False, timeout=30)
    return (job_dir / "journal").read_text(), job_dir


def marker(tmp_path: Path, name: str) -> Command:
    return sh('echo "$2" >> "$1"', str(tmp_path / "undo-order"), name)


def test_all_steps_ok_journal_notes_and_audit(tmp_path):
    journal, _ = run_job(
        tmp_path,
        [
            Step("one", sh('echo "pgmam-note down_at=10.0"; echo hello')),
            Step("two; with 'quotes' & $vars", sh('echo "pgmam-note up_at=10.5"')),
        ],
    )
    state = parse_journal(journal)
    assert state.result == "ok" and state.total == 2
    assert [s.status for s in state.steps.values()] == ["ok", "ok"]
    assert state.steps[2].title == "two; with 'quotes' & $vars"
    assert state.downtime == pytest.approx(0.5)
    audit = (tmp_path / "log" / "audit.log").read_text()
    assert "op=pitr app=shop who=alice@laptop" in audit and "result=ok" in audit and "downtime=0.50s" in audit
    assert not (tmp_path / "state" / "locks" / "shop").exists()  # released


def test_failure_undoes_completed_steps_in_reverse_and_quotes_the_log(tmp_path):
    journal, _ = run_job(
        tmp_path,
        [
            Step("a", sh("true"), undo=marker(tmp_path, "undo-a")),
            Step("b (no undo)", sh("true")),
            Step("c", sh("true"), undo=marker(tmp_path, "undo-c")),
            Step("d fails", sh('echo "something broke: $1" >&2; exit 3', "WAL missing")),
            Step("e never runs", sh("touch never"), undo=marker(tmp_path, "undo-e")),
        ],
    )
    state = parse_journal(journal)
    assert state.result == "rolled-back"
    assert state.failed_step.n == 4
    assert "something broke: WAL missing" in state.logs
    assert 5 not in state.steps
    assert (tmp_path / "undo-order").read_text().split() == ["undo-c", "undo-a"]
    assert [state.steps[n].status for n in (1, 2, 3)] == ["undone", "ok", "undone"]


def test_a_step_marked_undo_if_failed_cleans_up_its_own_partial_work(tmp_path):
    journal, _ = run_job(
        tmp_path,
        [
            Step("a", sh("true"), undo=marker(tmp_path, "undo-a")),
            Step("b half done", sh("exit 4"), undo=marker(tmp_path, "undo-b"), undo_if_failed=True),
        ],
    )
    state = parse_journal(journal)
    assert state.result == "rolled-back"
    assert (tmp_path / "undo-order").read_text().split() == ["undo-b", "undo-a"]


def test_follow_never_misses_the_end(tmp_path):
    """The follower checks for the end line before counting lines, so it always prints it."""
    from pgmam_remote.job import follow_command

    job = tmp_path / "j"
    job.mkdir()
    (job / "journal").write_text("1.0 begin 1 t\n1.1 start 1 a\n1.2 ok 1\n1.3 end ok\n")
    (job / "pid").write_text("999999\n")
    argv = list(follow_command(str(job)).argv)
    assert argv[0].endswith("/follow-job.sh")
    out = subprocess.run(["sh", str(SERVER_DIR / "follow-job.sh"), *argv[1:]], capture_output=True, text=True).stdout
    assert parse_journal(out).result == "ok"


def test_a_failure_past_the_commit_point_keeps_the_new_data(tmp_path):
    """Once the app runs on its new data (its client was told so), nothing undoes the job."""
    journal, _ = run_job(
        tmp_path,
        [
            Step("move in", sh("true"), undo=marker(tmp_path, "undo-move")),
            Step("verify", sh("true"), undo=marker(tmp_path, "undo-verify"), commit=True),
            Step("backup", sh('echo "no space left" >&2; exit 5')),
            Step("snapshot", sh("touch never")),
        ],
    )
    state = parse_journal(journal)
    assert state.result == "incomplete" and state.failed_step.n == 3
    assert "no space left" in state.logs
    assert not (tmp_path / "undo-order").exists()  # nothing undone
    assert 4 not in state.steps


def test_the_follower_returns_at_the_commit_step_while_the_job_runs_on(tmp_path):
    from pgmam_remote.job import follow_command

    job = tmp_path / "j"
    job.mkdir()
    (job / "journal").write_text("1.0 begin 3 t\n1.1 start 1 a\n1.2 ok 1\n1.3 start 2 b\n1.4 ok 2\n1.5 start 3 c\n")
    runner = subprocess.Popen(["flock", str(job / "running"), "sleep", "30"])  # the job, still running
    try:
        time.sleep(0.2)
        argv = list(follow_command(str(job), 2).argv)
        follower = ["sh", str(SERVER_DIR / "follow-job.sh"), *argv[1:]]
        done = subprocess.run(follower, capture_output=True, text=True, timeout=10)
    finally:
        runner.kill()
        runner.wait()
    assert done.returncode == 0
    state = parse_journal(done.stdout)
    assert state.result is None and state.steps[2].status == "ok"
    assert (job / "reported").exists()  # the client saw the app back: the same command, run again, is a new one


def test_failure_of_the_first_step_changes_nothing(tmp_path):
    journal, _ = run_job(tmp_path, [Step("a", sh("exit 1")), Step("b", sh("true"))])
    assert parse_journal(journal).result == "failed"


def test_failed_undo_is_reported_loudly(tmp_path):
    journal, _ = run_job(tmp_path, [Step("a", sh("true"), undo=sh("exit 2")), Step("b", sh("exit 1"))])
    state = parse_journal(journal)
    assert state.result == "rollback-failed" and state.steps[1].status == "undo-failed"


def test_live_lock_refuses_and_stale_lock_is_taken_over(tmp_path):
    """The lock is a flock the holder keeps for its life: refused while held, taken over once it died."""
    lock = tmp_path / "state" / "locks" / "shop"
    lock.mkdir(parents=True)
    (lock / "info").write_text("op=pitr\nwho=bob@other\n")
    holder = subprocess.Popen(["flock", str(lock) + ".lock", "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(lock) + ".lock", "true"], check=False).returncode == 0:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)
        journal, _ = run_job(tmp_path, [Step("a", sh("true"))])
        state = parse_journal(journal)
        assert state.result == "locked" and "bob@other" in state.detail
        assert (lock / "info").exists()  # the holder's lock is left alone
    finally:
        os.killpg(holder.pid, 9)  # flock and its sleep, which holds the lock too
        holder.wait()
    (tmp_path / "job").rename(tmp_path / "job-locked")
    journal, _ = run_job(tmp_path, [Step("a", sh("true"))])
    state = parse_journal(journal)
    assert state.result == "ok" and "stale_lock" in state.notes


def test_children_of_a_step_never_hold_the_lock(tmp_path):
    """A daemon a step starts (a cluster without systemd) must not keep the app locked after the job."""
    pid_file = tmp_path / "daemon.pid"
    daemon = sh('setsid -f sh -c \'echo $$ > "$1"; exec sleep 30\' daemon "$1" > /dev/null 2>&1', str(pid_file))
    journal, _ = run_job(tmp_path, [Step("start a daemon", daemon)])
    try:
        assert parse_journal(journal).result == "ok"
        lock = tmp_path / "state" / "locks" / "shop.lock"
        assert subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0
    finally:
        deadline = time.monotonic() + 5
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), 9)


def test_journal_parser_tolerates_noise():
    state = parse_journal("garbage\n1.0 begin 2 title here\n1.5 start 1 first\n2.0 ok 1\n0 lost the job stopped\n")
    assert state.total == 2 and state.title == "title here" and state.steps[1].status == "ok"
    assert state.result == "lost"


def test_finished_jobs_of_the_same_op_and_app_are_pruned_to_the_newest(tmp_path):
    """Job dirs would pile up (an hourly backup makes 24 a day); running ones and other apps stay."""
    from pgmam_remote.job import KEEP_JOBS

    def job_dir(name: str, ended: bool) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "journal").write_text("1.0 begin 1 t\n" + ("2.0 end ok\n" if ended else ""))

    old = [f"pitr-shop-20250101T0000{i:02d}Z" for i in range(KEEP_JOBS + 3)]
    for name in old:
        job_dir(name, ended=True)
    job_dir("pitr-shop-20240101T000000Z", ended=False)  # oldest, but never finished: left alone
    job_dir("pitr-shop_dev-20240101T000000Z", ended=True)  # another app
    job_dir("backup-shop-20240101T000000Z", ended=True)  # another op
    journal, _ = run_job(tmp_path, [Step("a", sh("true"))])
    assert parse_journal(journal).result == "ok"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("pitr-", "backup-")))
    others = ["pitr-shop-20240101T000000Z", "pitr-shop_dev-20240101T000000Z", "backup-shop-20240101T000000Z"]
    assert left == sorted([*others, *old[-KEEP_JOBS:]])


def test_what_goes_on_after_the_client_returned_names_the_steps_past_the_commit_point():
    from pgmam_remote.runner import goes_on

    steps = (Step("move in", sh("true")), Step("verify", sh("true"), commit=True), Step("backup", sh("true")))
    spec = JobSpec("pitr", "shop", "pitr-shop-20260101T000000Z", "a@b", {}, Plan("h", "t", steps))
    # the follower may pass on the next step's start with the commit step's ok
    state = parse_journal(
        "1.0 begin 3 t\n1.1 start 1 move in\n1.2 ok 1\n1.3 start 2 verify\n1.4 ok 2\n1.5 start 3 backup\n"
    )
    assert goes_on(spec, state) is None  # it followed to the end: nothing goes on
    state.returned = True
    assert (
        goes_on(spec, state)
        == "backup: running on the server as job pitr-shop-20260101T000000Z (`inv status` shows it)"
    )


def test_a_job_started_within_the_second_of_another_gets_the_next_free_second():
    now = datetime(2026, 12, 3, 8, 52, 42, 500000, tzinfo=UTC)
    facts = ServerFacts("h", now, 1, True, {}, (), frozenset(), (), "absent", frozenset(), ())
    assert job_stamp(facts) == "20261203T085242Z"
    ran = tuple(JobRecord(f"schedule-a-20261203T08524{s}Z", "a", "schedule", "ok", {}) for s in (2, 3))
    assert job_stamp(replace(facts, jobs=ran)) == "20261203T085244Z"
