"""docs/reference/status.schema.json describes what `inv status --json` writes: checked here on statuses
built from recorded probes (the integration tests check every real `inv status --json` run too)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from pgmam_remote import facts, health, inventory
from pgmam_remote.inventory import Host
from pgmam_remote.ops import s3, status
from pgmam_remote.server_code import VERSION as SERVER_CODE

from .conftest import load
from .test_offsite import GOOD, vault_facts
from .test_s3 import SHIPPING, bucket, state

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "reference" / "status.schema.json"
PROD1 = Host("prod1", "10.0.0.1")
DATA = "/var/lib/postgresql/15"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def as_printed(statuses: list[health.HostStatus]) -> dict:
    """to_json as `inv status --json` prints it (tuples become lists, and so on)."""
    return json.loads(json.dumps(status.to_json(statuses)))


def check(validator: jsonschema.Draft202012Validator, statuses: list[health.HostStatus]) -> dict:
    document = as_printed(statuses)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    return document


def busy_shop() -> facts.ServerFacts:
    """shop after a pitr and a rollback (an old- copy kept), with what the probe can add: a live job
    and its working copy, schedules and their runs, drills and a hole in the archived WAL."""
    now = int(facts.parse_probe(load("probe-after-rollback.txt")).now.timestamp())
    extra = "\n".join(
        [
            "",
            "@@locks",
            "yes op=pitr app=shop who=root@laptop job=pitr-shop-20261124T005000Z",
            "@@jobs",
            "none op=pitr app=shop who=root@laptop job=pitr-shop-20261124T005000Z running=yes step=3~start~a~copy",
            "@@preserved",
            f"2048 {now - 60} {DATA}/staging-shop-20261124T005000Z",
            "@@schedules",
            "# pgmam-schedule app=shop type=full calendar=Sun_03:00",
            "# pgmam-schedule app=shop type=verify calendar=daily",
            "# pgmam-schedule app=shop type=incr calendar=not_a_calendar",
            "@@scheduled-runs",
            f"shop {now - 7200} 0 full 20261124-004929F 12",
            f"shop {now - 600} 1 verify - 40",
            "@@drills",
            f"shop {now - 500} failed 20261124-004929F - - - latest",
            "@@wal-gaps",
            f"shop 15-1 00000003000000000000000B 00000003000000000000000F {now - 300} {now - 296.5}",
            "",
        ]
    )
    return facts.parse_probe(load("probe-after-rollback.txt") + extra)


def test_a_healthy_app_matches(validator):
    probed = replace(facts.parse_probe(load("probe-one-app.txt")), server_code=SERVER_CODE)
    host = health.assess(PROD1, probed, remote_commands=1, seconds=0.42)
    assert host.healthy
    document = check(validator, [host])
    (app1,) = document["hosts"][0]["clusters"]
    assert document["healthy"] is True and app1["recovery_window"] and app1["archiving"]["ok"] is True


def test_an_app_with_problems_a_running_job_and_kept_copies_matches(validator):
    host = health.assess(PROD1, busy_shop())
    (shop,) = check(validator, [host])["hosts"][0]["clusters"]
    assert not host.healthy and shop["healthy"] is False and shop["problems"]
    assert shop["job"]["alive"] is True and shop["last_job"]["step"] == "3 start a copy"
    assert [p["kind"] for p in shop["preserved"]] == ["old", "staging"]
    assert [s["next"] is None for s in shop["schedule"]] == [False, False, True]
    assert shop["last_scheduled"]["ok"] is False and shop["last_proven_restorable"]["tables"] is None
    assert shop["recovery_window"]["breaks"][0]["to"] is None


def test_clusters_pgmam_did_not_make_and_a_failed_probe_of_pgbackrest_match(validator, foreign):
    broken = "@@clusters\n15 x 5432 online postgres /d /l\n@@stanza-confs\nx\n@@pgbackrest\nERROR: [041]: no\n"
    hosts = [health.assess(PROD1, foreign), health.assess(Host("prod2", "10.0.0.2"), facts.parse_probe(broken))]
    document = check(validator, hosts)
    assert [c["managed"] for c in document["hosts"][0]["clusters"]] == [False, False]
    assert document["hosts"][1]["server_code"] == "none" and document["hosts"][1]["disk_free_bytes"] is None


def test_an_unreachable_host_matches(validator):
    down = health.HostStatus(
        "prod9", "10.0.0.99", reachable=False, error="cannot connect", problems=["cannot connect"], seconds=2.0
    )
    sudo = health.HostStatus("prod8", "10.0.0.98", reachable=True, error="sudo rejected the password", problems=["x"])
    document = check(validator, [down, sudo])
    assert document["healthy"] is False and document["hosts"][0]["server_code"] is None


def offsite_host(views: tuple[health.RepoView, ...], ship: str) -> health.HostStatus:
    return health.assess(PROD1, facts.parse_probe(load("probe-one-app.txt") + ship), repos=views)


def test_an_app_in_off_host_repos_reachable_or_not_matches(validator):
    vault = inventory.parse(GOOD).repos["vault"]
    ship = "\n@@ship\nshipper active\napp vault app1 0 0 - 1764547000\n"
    reachable = offsite_host((health.RepoView(vault, vault_facts(backups=1)),), ship)
    unreachable = offsite_host((health.RepoView(vault, None, "no answer within 5 s"),), ship)
    not_kept = offsite_host((health.RepoView(vault, vault_facts()),), "")
    document = check(validator, [reachable, unreachable, not_kept])
    (there,), (lost,), (missing,) = (h["clusters"][0]["offsite"] for h in document["hosts"])
    assert there["reachable"] is True and there["backup_count"] == 1 and there["waiting"]["behind"] is False
    assert lost["reachable"] is False and "backup_count" not in lost and "waiting" in lost
    assert "waiting" not in missing and missing["last_backup"] is None


def test_an_app_in_an_s3_repo_reachable_or_not_matches(validator):
    server = facts.parse_probe(load("probe-one-app.txt") + SHIPPING)
    read = health.RepoView(bucket(), s3.as_vault(server, "prod1", s3.parse_state(state(), "prod1")))
    down = health.RepoView(bucket(), None, "repo bucket cannot be read from prod1: ERROR: [049]: timeout")
    document = check(validator, [health.assess(PROD1, server, repos=(read, down))])
    there, lost = document["hosts"][0]["clusters"][0]["offsite"]
    assert (there["host"], there["reachable"], lost["reachable"]) == (None, True, False)


def test_the_schema_refuses_a_key_it_does_not_describe(validator):
    document = as_printed([health.assess(PROD1, facts.parse_probe(load("probe-one-app.txt")))])
    document["hosts"][0]["clusters"][0]["surprise"] = 1
    (error,) = validator.iter_errors(document)
    assert error.json_path == "$.hosts[0].clusters[0]" and "surprise" in error.message
