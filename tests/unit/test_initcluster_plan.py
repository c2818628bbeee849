"""The initcluster planner: refusals before any change, resume, no-op, exact commands."""

import shlex
from dataclasses import replace

import pytest

from pgmam_remote import configs, facts, server_code
from pgmam_remote.errors import Refusal
from pgmam_remote.ops.initcluster import InitClusterRequest, plan_initcluster

from .conftest import load

FULL_INFO = facts.parse_pgbackrest_info(load("pgbackrest-info-one-full.json"))["fixt"]


def test_fresh_app_gets_every_step_in_order(foreign):
    plan = plan_initcluster("prod1", foreign, InitClusterRequest("shop", 5433))
    assert [s.title for s in plan.steps] == [
        "write pgBackRest global config",
        "write stanza config /etc/pgbackrest/conf.d/shop.conf",
        "create cluster 15/shop on port 5433 (data checksums)",
        "enable WAL archiving (/etc/postgresql/15/shop/conf.d/pgmam.conf)",
        "start cluster 15/shop",
        "create stanza shop",
        "prove WAL archiving works (pgbackrest check)",
        "first full backup",
        "snapshot the cluster's config next to the backup",
    ]
    create = plan.steps[2].command
    assert create.argv == (
        "pg_createcluster",
        "--port",
        "5433",
        "--start-conf",
        "auto",
        "15",
        "shop",
        "--",
        "--data-checksums",
    )
    assert plan.steps[7].command.line() == "cd / && sudo -n -u postgres -- pgbackrest --stanza=shop --type=full backup"
    assert plan.steps[7].long


def test_dry_run_render_shows_every_exact_command(foreign):
    plan = plan_initcluster("prod1", foreign, InitClusterRequest("shop", 5433))
    text = "\n".join(plan.render())
    for step in plan.steps:
        assert server_code.display(step.command) in text
    # file contents travel as one argument of pgmam's write-file script, never spliced into a script;
    # the plan shows their size, not their text
    write = plan.steps[3].command
    argv = shlex.split(write.line().removeprefix("cd / && "))
    assert argv[argv.index("--") + 1 :] == [
        f"{server_code.CODE_DIR}/steps/write-file.sh",
        "/etc/postgresql/15/shop/conf.d/pgmam.conf",
        "postgres:postgres",
        "0644",
        configs.archive_conf("shop"),
    ]
    assert "$ steps/write-file.sh /etc/postgresql/15/shop/conf.d/pgmam.conf postgres:postgres 0644 <6 lines>" in text
    assert "wal_level" not in text


def test_global_config_is_fast_by_default():
    text = configs.global_conf(cpu_count=8)
    expected = ("compress-type=zst", "start-fast=y", "process-max=4", "archive-async=y", "repo1-retention-full=14")
    for line in expected:
        assert line in text.splitlines()
    assert "archive-push-queue-max=4GiB" in text
    assert "process-max=1" in configs.global_conf(cpu_count=1).splitlines()


def test_pg_version_flag_inventory_and_newest(foreign):
    with_16 = replace(foreign, pg_versions=(15, 16))
    assert "16/shop" in plan_initcluster("h", with_16, InitClusterRequest("shop", 5433)).steps[2].title
    assert "15/shop" in plan_initcluster("h", with_16, InitClusterRequest("shop", 5433, 15)).steps[2].title


@pytest.mark.parametrize(
    ("mutate", "req", "message"),
    [
        (lambda f: f, InitClusterRequest("fixt", 5600), "a cluster named fixt already exists .* not made by pgmam"),
        (lambda f: f, InitClusterRequest("shop", 5499), "port 5499 belongs to cluster 15/fixt"),
        (lambda f: f, InitClusterRequest("shop", 5432), r"port 5432 belongs to cluster 15/main \(down\)"),
        (lambda f: f, InitClusterRequest("shop", 2024), "port 2024 is already in use by a listening socket"),
        (lambda f: f, InitClusterRequest("shop", 5433, 16), "PostgreSQL 16 is not installed"),
        (lambda f: replace(f, pg_versions=()), InitClusterRequest("shop", 5433), "no PostgreSQL server is installed"),
        (
            lambda f: replace(f, tools={**f.tools, "pgbackrest": False}),
            InitClusterRequest("shop", 5433),
            "pgbackrest not installed",
        ),
        (
            lambda f: replace(f, tools={**f.tools, "pg_createcluster": False}),
            InitClusterRequest("shop", 5433),
            "postgresql-common not installed",
        ),
        (
            lambda f: replace(f, clusters=(replace(f.clusters[0], in_recovery=True), f.clusters[1])),
            InitClusterRequest("shop", 5433),
            r"in recovery: 15/fixt",
        ),
        (lambda f: replace(f, global_conf="foreign"), InitClusterRequest("shop", 5433), "was not written by pgmam"),
        (
            lambda f: replace(f, stanzas={"shop": replace(FULL_INFO, name="shop")}),
            InitClusterRequest("shop", 5433),
            "stanza named shop already exists with 1 backup",
        ),
    ],
)
def test_refusals(foreign, mutate, req, message):
    with pytest.raises(Refusal, match=message) as info:
        plan_initcluster("prod1", mutate(foreign), req)
    assert info.value.hint


def half_made(foreign, **cluster_changes):
    """shop: stanza config written, cluster created, then the connection dropped."""
    changes = {"name": "shop", "port": 5433, "status": "down", "data_dir": "/var/lib/postgresql/15/shop"}
    shop = replace(foreign.clusters[1], **{**changes, **cluster_changes})
    return replace(
        foreign, global_conf="pgmam", managed_stanzas=frozenset({"shop"}), clusters=(*foreign.clusters, shop)
    )


def test_half_made_cluster_resumes_missing_steps(foreign):
    plan = plan_initcluster("prod1", half_made(foreign), InitClusterRequest("shop", 5433))
    assert [s.title.split(" ")[0] for s in plan.steps] == [
        "enable",
        "start",
        "create",
        "prove",
        "first",
        "snapshot",
    ]
    assert any("cluster 15/shop" in d for d in plan.done)


def test_running_cluster_without_archiving_is_restarted(foreign):
    facts_ = half_made(foreign, status="online", pgmam_conf=True, archive_mode="off")
    plan = plan_initcluster("prod1", facts_, InitClusterRequest("shop", 5433))
    assert plan.steps[0].title == "restart 15/shop to turn archiving on"


def test_finished_app_is_a_no_op(foreign):
    facts_ = half_made(
        foreign,
        status="online",
        pgmam_conf=True,
        archive_mode="on",
        archive_command="pgbackrest --stanza=shop archive-push %p",
    )
    facts_ = replace(facts_, stanzas={"shop": replace(FULL_INFO, name="shop")})
    plan = plan_initcluster("prod1", facts_, InitClusterRequest("shop", 5433))
    assert plan.empty
    assert "nothing to do" in plan.render()[-1]


def test_busy_app_is_refused(foreign):
    locked = replace(foreign, locks=(facts.LockInfo("shop", True, {"op": "pitr", "who": "bob", "job": "j1"}),))
    with pytest.raises(Refusal, match="shop is busy: pitr of shop by bob"):
        plan_initcluster("prod1", locked, InitClusterRequest("shop", 5433))
    stale = replace(foreign, locks=(facts.LockInfo("shop", False, {"op": "pitr"}),))
    assert plan_initcluster("prod1", stale, InitClusterRequest("shop", 5433)).steps


def test_resume_with_other_port_is_refused(foreign):
    with pytest.raises(Refusal, match="already exists as PostgreSQL 15 on port 5433"):
        plan_initcluster("prod1", half_made(foreign), InitClusterRequest("shop", 5440))
