"""What status says about jobs a crash, a kill or a power cut interrupted (pure: recorded probe + facts)."""

from dataclasses import replace
from datetime import UTC, datetime

from pgmam_remote import facts
from pgmam_remote.health import assess, assess_cluster
from pgmam_remote.inventory import Host
from pgmam_remote.server_code import VERSION as SERVER_CODE

from .conftest import load

STAGING = "/var/lib/postgresql/15/staging-app1-20261202T035016Z"


def server(jobs=(), dirs=(), lock_alive=None) -> tuple[facts.ClusterFacts, facts.ServerFacts]:
    probed = facts.parse_probe(load("probe-one-app.txt"))
    cluster = probed.cluster("app1")
    assert cluster is not None
    preserved = tuple(facts.PreservedDir(path, 2**30, datetime(2026, 12, 2, tzinfo=UTC)) for path in dirs)
    locks = () if lock_alive is None else (facts.LockInfo("app1", lock_alive, {"op": "pitr", "app": "app1"}),)
    return cluster, replace(probed, jobs=tuple(jobs), preserved=preserved, locks=locks)


def job(result: str, running: str = "no", step: str = "3~start~a~temporary~instance") -> facts.JobRecord:
    info = {"job": "pitr-app1-20261202T035016Z", "app": "app1", "op": "pitr", "running": running, "step": step}
    return facts.JobRecord(info["job"], "app1", "pitr", result, info)


def test_a_killed_job_is_named_with_its_step_and_what_it_left():
    cluster, probed = server([job("none")], [STAGING], lock_alive=False)
    problems = assess_cluster(cluster, probed).problems
    assert problems == [
        f"job pitr-app1-20261202T035016Z died at step 3 start a temporary instance, leaving {STAGING} (1.1 GB); "
        "the next pgmam command on app1 undoes it"
    ]


def test_a_running_job_and_its_working_copy_are_no_problem():
    cluster, probed = server([job("none", running="yes")], [STAGING], lock_alive=True)
    assert assess_cluster(cluster, probed).problems == []


def test_a_working_copy_no_job_accounts_for_is_a_leftover_with_its_removal():
    cluster, probed = server([job("recovered")], [STAGING])
    assert assess_cluster(cluster, probed).problems == [
        f"leftover {STAGING} (1.1 GB): remove it with sudo rm -rf -- {STAGING}"
    ]


def test_recovered_is_healthy_interrupted_asks_for_a_backup_recovery_failed_is_red():
    cluster, probed = server([job("recovered")])
    status = assess_cluster(cluster, probed)
    assert status.problems == [] and status.last_job["result"] == "recovered"
    cluster, probed = server([job("interrupted")])
    assert "take a backup: inv backup --app app1" in assess_cluster(cluster, probed).problems[0]
    cluster, probed = server([job("recovery-failed")])
    assert "could not undo everything" in assess_cluster(cluster, probed).problems[0]


def test_the_probe_reports_running_and_the_last_step():
    text = "@@jobs\nnone op=pitr app=app1 job=pitr-app1-1 reported=no running=no step=4~replay~WAL\n@@end\n"
    (record,) = facts.parse_probe(text).jobs
    assert record.died and record.last_step == "4 replay WAL"


def test_status_says_when_a_server_runs_older_pgmam_server_code():
    probed = facts.parse_probe(load("probe-one-app.txt"))
    host = Host("sbx1", "10.213.0.11")
    assert assess(host, replace(probed, server_code="")).server_code == "none"
    assert assess(host, replace(probed, server_code=SERVER_CODE)).server_code == "current"
    assert assess(host, replace(probed, server_code="0123456789abcdef")).server_code == "older"


def test_a_follow_up_that_failed_after_the_commit_point_turns_status_red_with_what_to_do():
    cluster, probed = server([job("incomplete", step="13~prove~archiving~and~take~a~backup")])
    (problem,) = assess_cluster(cluster, probed).problems
    assert "app1 runs on its new data, but step 13 prove archiving and take a backup failed after it" in problem
    assert problem.endswith("take a backup: inv backup --app app1")


def test_a_restore_that_only_finishes_its_backup_does_not_hold_up_another_apps_restore():
    from pgmam_remote.errors import Refusal
    from pgmam_remote.ops import restore

    lock = facts.LockInfo("other", True, {"op": "pitr", "app": "other", "job": "pitr-other-20261202T035016Z"})
    running = {"job": "pitr-other-20261202T035016Z", "app": "other", "op": "pitr", "running": "yes"}
    _, probed = server()
    for committed, refused in (("no", True), ("yes", False)):
        record = facts.JobRecord(running["job"], "other", "pitr", "none", {**running, "committed": committed})
        busy = replace(probed, locks=(lock,), jobs=(record,))
        try:
            restore.check_no_conflict("h", busy, "app1")
        except Refusal as exc:
            assert refused and "another restore is running" in exc.message
        else:
            assert not refused
