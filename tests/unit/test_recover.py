"""recover-jobs and the runner's recover mode, run for real with sh: a job killed mid-way is undone,
one killed past its commit point is kept, a running one is left alone, and a finished one too."""

import os
import subprocess
import time
from pathlib import Path

from pgmam_remote.command import sh
from pgmam_remote.job import JOBS_DIR, JobSpec, parse_journal, render_script
from pgmam_remote.plan import Plan, Step
from pgmam_remote.server_code import SERVER_DIR

RECOVER = SERVER_DIR / "recover-jobs.sh"
DIE = sh('kill -9 "$(cat "$JOB_DIR/pid")"; sleep 1')  # the runner dies here, as in a power cut


def marker(tmp_path: Path, name: str) -> Step:
    """A step that leaves a file, and whose undo records its name."""
    return Step(
        name,
        sh('touch "$1/$2"', str(tmp_path), name),
        undo=sh('echo "$2" >> "$1/undo-order"', str(tmp_path), name),
    )


def start_job(tmp_path: Path, steps: list[Step], job_id: str = "pitr-shop-20260101T000000Z") -> Path:
    spec = JobSpec("pitr", "shop", job_id, "alice@laptop", {"target": "t"}, Plan("h", "test", tuple(steps)))
    job_dir = tmp_path / "state" / JOBS_DIR.rsplit("/", 1)[-1] / job_id
    job_dir.mkdir(parents=True)
    (job_dir / "info").write_text(spec.info_text())
    (job_dir / "job.sh").write_text(render_script(spec, code_dir=str(SERVER_DIR)))
    env = {**os.environ, "PGMAM_STATE_DIR": str(tmp_path / "state"), "PGMAM_LOG_DIR": str(tmp_path / "log")}
    subprocess.run(["sh", str(job_dir / "job.sh"), str(job_dir), "shop"], env=env, check=False, timeout=30)
    return job_dir


def recover(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGMAM_STATE_DIR": str(tmp_path / "state"), "PGMAM_LOG_DIR": str(tmp_path / "log")}
    return subprocess.run(["sh", str(RECOVER), *args], env=env, capture_output=True, text=True, timeout=30)


def test_a_job_that_died_is_undone_in_reverse_and_its_app_released(tmp_path):
    job = start_job(tmp_path, [marker(tmp_path, "a"), marker(tmp_path, "b"), Step("dies", DIE)])
    assert parse_journal((job / "journal").read_text()).result is None  # no end: it died
    assert (tmp_path / "state" / "locks" / "shop").is_dir()  # its lock info is left behind
    done = recover(tmp_path, "shop")
    assert done.returncode == 0, done.stderr
    state = parse_journal((job / "journal").read_text())
    assert state.result == "recovered" and state.notes["recovering"] == "3"
    assert (tmp_path / "undo-order").read_text().split() == ["b", "a"]
    assert not (tmp_path / "state" / "locks" / "shop").exists()
    assert "result=recovered" in (tmp_path / "log" / "audit.log").read_text()
    assert recover(tmp_path).returncode == 0 and (tmp_path / "undo-order").read_text().split() == ["b", "a"]


def test_a_job_that_died_past_its_commit_point_is_kept(tmp_path):
    commit = Step("the app runs on its new data", sh("true"), commit=True)
    job = start_job(tmp_path, [marker(tmp_path, "a"), commit, Step("dies", DIE)])
    recover(tmp_path)
    assert parse_journal((job / "journal").read_text()).result == "interrupted"
    assert not (tmp_path / "undo-order").exists()
    assert (tmp_path / "a").exists()


def test_the_step_that_ran_when_it_died_is_undone_when_it_cleans_up_after_itself(tmp_path):
    own = Step("dies half way", DIE, undo=sh('echo half >> "$1/undo-order"', str(tmp_path)), undo_if_failed=True)
    start_job(tmp_path, [marker(tmp_path, "a"), own])
    recover(tmp_path)
    assert (tmp_path / "undo-order").read_text().split() == ["half", "a"]


def test_a_running_job_and_other_apps_jobs_are_left_alone(tmp_path):
    job = start_job(tmp_path, [marker(tmp_path, "a"), Step("dies", DIE)])
    holder = subprocess.Popen(["flock", str(job / "running"), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(job / "running"), "true"], check=False).returncode == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        recover(tmp_path)  # its runner (here: a stand-in) still holds the job's lock
        assert parse_journal((job / "journal").read_text()).result is None
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    recover(tmp_path, "blog")  # another app's recovery
    assert parse_journal((job / "journal").read_text()).result is None
    recover(tmp_path, "shop")
    assert parse_journal((job / "journal").read_text()).result == "recovered"
