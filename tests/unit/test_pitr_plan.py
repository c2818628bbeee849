"""pitr / rollback planning on a recorded server (after a pitr and a rollback): targets, backups, refusals."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pgmam_remote import facts, server_code, validate
from pgmam_remote.errors import Refusal
from pgmam_remote.facts import LockInfo
from pgmam_remote.ops.pitr import PitrRequest, plan_pitr
from pgmam_remote.ops.rollback import plan_rollback
from pgmam_remote.window import usable_backups

from .conftest import load


@pytest.fixture
def server() -> facts.ServerFacts:
    """shop on timeline 3 (TL1 -> TL2 by pitr, TL2 -> TL3 by rollback), one preserved dir, a restore point."""
    return facts.parse_probe(load("probe-after-rollback.txt"))


def at(server, seconds_ago: float) -> datetime:
    return server.now - timedelta(seconds=seconds_ago)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-19 10:40:00+00", datetime(2026, 1, 19, 10, 40, tzinfo=UTC)),
        ("2026-01-19T10:40:00Z", datetime(2026, 1, 19, 10, 40, tzinfo=UTC)),
        ("2026-01-19 11:40:00+01:00", datetime(2026, 1, 19, 10, 40, tzinfo=UTC)),
        ("2026-01-19 10:40:00.5 UTC", datetime(2026, 1, 19, 10, 40, 0, 500000, tzinfo=UTC)),
    ],
)
def test_targets_with_a_zone(text, expected):
    assert validate.target_time(text) == expected


@pytest.mark.parametrize(("text", "why"), [("2026-01-19 10:40:00", "no time zone"), ("yesterday", "not a date")])
def test_targets_refused(text, why):
    with pytest.raises(Refusal, match=why) as info:
        validate.target_time(text)
    assert "2026-01-19 10:40:00+00" in info.value.hint


def test_history_and_lineage_exclude_abandoned_backups(server):
    shop = server.cluster("shop")
    assert shop.timeline == 3 and [tl for tl, _ in shop.history] == [1, 2]
    backups = server.stanzas["shop"].backups
    lineage = [b.label for b in usable_backups(shop, backups)]
    # the TL1 backup was taken after TL2 forked off TL1: replay cannot reach timeline 3 from it
    assert lineage == ["20261124-004929F"]


def test_plan_beside_then_swap(server):
    plan = plan_pitr("sbx1", server, PitrRequest("shop", to=at(server, 1)), "me@laptop")
    titles = [s.title for s in plan.plan.steps]
    assert titles[0].startswith("archive everything")
    assert titles[1].startswith("restore backup 20261124-004929F into /var/lib/postgresql/15/staging-shop-")
    stop = next(i for i, t in enumerate(titles) if t.startswith("stop shop"))
    assert stop > titles.index("remove staging-only and recovery settings from the restored copy")
    assert titles[stop + 1].startswith("preserve the current data as /var/lib/postgresql/15/old-shop-")
    assert plan.plan.as_job and plan.spec.app == "shop" and plan.spec.info["mode"] == "beside"
    restore_cmd = plan.plan.steps[1].command.argv
    assert "--target-timeline=3" in restore_cmd and "--type=time" in restore_cmd
    assert any(w.startswith("shop keeps serving") for w in plan.words)
    rendered = "\n".join(plan.plan.render())
    assert "sudo" not in rendered and "undo: $" in rendered


def test_stop_first_stops_before_restoring(server):
    plan = plan_pitr("sbx1", server, PitrRequest("shop", to=at(server, 1), stop_first=True), "me")
    titles = [s.title for s in plan.plan.steps]
    assert titles[1] == "stop shop (downtime starts)"
    assert sum(t.startswith("stop shop") for t in titles) == 1


def test_into_builds_a_new_app(server):
    plan = plan_pitr("sbx1", server, PitrRequest("shop", to=at(server, 1), into="shop_copy", port=5440), "me")
    assert plan.spec.app == "shop_copy"  # the lock is the new app's; the source is never stopped
    titles = [s.title for s in plan.plan.steps]
    assert not any(t.startswith("stop shop") for t in titles)
    restore_step = next(s for s in plan.plan.steps if "archiving off" in s.title)
    assert restore_step.command.argv[0].endswith("/steps/into-restore.sh")
    assert "--archive-mode=off" in server_code.text("steps/into-restore.sh")


def test_to_point_uses_the_recorded_point(server):
    point = facts.RestorePoint("shop", "before-migration", at(server, 1), "0/D000090")
    plan = plan_pitr(
        "sbx1", replace(server, restore_points=(point,)), PitrRequest("shop", point="before-migration"), "me"
    )
    assert "--target=before-migration" in plan.plan.steps[1].command.argv


def test_another_apps_backup_does_not_block_a_pitr_but_its_own_does(server):
    busy = replace(server, locks=(LockInfo("blog", True, {"op": "backup", "who": "schedule", "job": "j"}),))
    assert plan_pitr("sbx1", busy, PitrRequest("shop", to=at(server, 1)), "me").plan.steps
    own = replace(server, locks=(LockInfo("shop", True, {"op": "backup", "who": "schedule", "job": "j"}),))
    with pytest.raises(Refusal, match="shop is busy: backup of shop by schedule"):
        plan_pitr("sbx1", own, PitrRequest("shop", to=at(server, 1)), "me")


def test_a_point_older_than_every_usable_backup_is_refused(server):
    with pytest.raises(Refusal, match="before the earliest restorable point"):
        plan_pitr("sbx1", server, PitrRequest("shop", point="before-migration"), "me")


@pytest.mark.parametrize(
    ("change", "req", "message"),
    [
        (None, lambda s: PitrRequest("shop", to=s.now + timedelta(hours=1)), "is in the future"),
        (None, lambda s: PitrRequest("shop", to=at(s, 3600)), "before the earliest restorable point"),
        (None, lambda s: PitrRequest("nope", to=at(s, 1)), "no cluster named nope"),
        (None, lambda s: PitrRequest("shop", point="nope"), "no restore point named 'nope'"),
        (
            lambda s: replace(s, locks=(LockInfo("shop", True, {"op": "pitr", "who": "bob", "job": "j"}),)),
            lambda s: PitrRequest("shop", to=at(s, 1)),
            "shop is busy: pitr of shop by bob",
        ),
        (
            lambda s: replace(s, locks=(LockInfo("blog", True, {"op": "pitr"}),)),
            lambda s: PitrRequest("shop", to=at(s, 1)),
            "another restore is running on this server",
        ),
        (
            lambda s: replace(s, disks=(facts.DiskFacts("/", 10**12, 10**6),)),
            lambda s: PitrRequest("shop", to=at(s, 1)),
            "not enough free space",
        ),
        (
            lambda s: replace(s, clusters=(replace(s.cluster("shop"), status="down"),)),
            lambda s: PitrRequest("shop", to=at(s, 1)),
            "shop is down",
        ),
        (
            lambda s: replace(s, managed_stanzas=frozenset()),
            lambda s: PitrRequest("shop", to=at(s, 1)),
            "was not made by pgmam",
        ),
        (
            None,
            lambda s: PitrRequest("shop", to=at(s, 1), into="shop", port=5440),
            "a cluster named shop already exists",
        ),
        (None, lambda s: PitrRequest("shop", to=at(s, 1), into="copy", port=5433), "port 5433 belongs to cluster"),
    ],
)
def test_pitr_refusals(server, change, req, message):
    facts_ = change(server) if change else server
    with pytest.raises(Refusal, match=message) as info:
        plan_pitr("sbx1", facts_, req(facts_), "me")
    assert info.value.hint


def test_rollback_swaps_in_the_newest_preserved_dir_on_a_new_timeline(server):
    plan = plan_rollback("sbx1", server, "shop", None, "me")
    assert plan.source.name == "old-shop-20261124T004924Z"
    titles = [s.title for s in plan.plan.steps]
    assert titles[2] == f"move {plan.source.path} into place"
    assert "set it to promote to a new timeline when it starts" in titles
    move = plan.plan.steps[2]
    assert move.undo is not None and plan.source.path in move.undo.argv  # a failed rollback puts it back


def test_rollback_refusals(server):
    with pytest.raises(Refusal, match="is not a preserved dir of shop"):
        plan_rollback("sbx1", server, "shop", "old-shop-19990101T000000Z", "me")
    with pytest.raises(Refusal, match="has no preserved data dir"):
        plan_rollback("sbx1", replace(server, preserved=()), "shop", None, "me")
    # a job's working copy is never something to roll back to
    staging = facts.PreservedDir("/var/lib/postgresql/15/staging-shop-20261124T010000Z", 1, server.now)
    with pytest.raises(Refusal, match="is not a preserved dir of shop"):
        plan_rollback("sbx1", replace(server, preserved=(staging,)), "shop", staging.name, "me")
