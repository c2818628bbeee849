"""Holes in the archived WAL: parsed from the probe, shown as breaks in the recovery window, and
refused as restore targets before anything changes."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pgmam_remote import facts, health
from pgmam_remote.errors import Refusal
from pgmam_remote.inventory import Host
from pgmam_remote.ops import verify
from pgmam_remote.ops.backup import list_backups
from pgmam_remote.ops.pitr import PitrRequest, plan_pitr
from pgmam_remote.window import recovery_window

from .conftest import load

BEFORE, AFTER = "00000003000000000000000B", "00000003000000000000000F"
HOLE = datetime(2026, 11, 24, 0, 49, 35, tzinfo=UTC)  # when the last segment before it was archived


def probed(*gap_lines: str) -> facts.ServerFacts:
    """shop after a pitr and a rollback (timeline 3, its one usable backup 20261124-004929F from 0A)."""
    return facts.parse_probe(load("probe-after-rollback.txt") + "\n@@wal-gaps\n" + "\n".join(gap_lines) + "\n")


def gap_line(before: str = BEFORE, after: str = AFTER, stanza: str = "shop") -> str:
    return f"{stanza} 15-1 {before} {after} {HOLE.timestamp()} {HOLE.timestamp() + 3.5}"


def test_the_probe_line_is_a_gap_with_its_missing_segments():
    (gap,) = probed(gap_line(), "garbage line", "other 15-1 short names 1 2").wal_gaps
    assert (gap.stanza, gap.archive_id, gap.before, gap.after) == ("shop", "15-1", BEFORE, AFTER)
    assert gap.missing == 3 and gap.before_time == HOLE
    across = facts.WalGap("s", "15-1", "0000000100000001000000FF", "000000010000000200000001", HOLE, HOLE)
    assert across.missing == 1  # 0x1FF, then 0x200 (missing), then 0x201: 256 segments to a log file


def test_a_hole_breaks_the_recovery_window_and_turns_status_red():
    server = probed(gap_line())
    shop = server.cluster("shop")
    window = recovery_window(shop, server.stanzas["shop"].backups, server.gaps_for("shop"))
    (hole,) = window.breaks
    assert hole.start == HOLE and hole.end is None and window.end is not None and window.end <= HOLE
    assessed = health.assess(Host("sbx1", "10.0.0.1"), server)
    (cluster,) = [c for c in assessed.clusters if c.app == "shop"]
    assert not cluster.healthy
    expected = "3 WAL segments missing from the repository after 00000003000000000000000B (archived 2026-11-24T00:49:35"
    assert any(p.startswith(expected) and p.endswith("take a full backup now") for p in cluster.problems)
    assert cluster.recovery_window["breaks"][0]["missing_segments"] == 3  # type: ignore[index]
    _, listed = list_backups("sbx1", server, "shop")
    assert listed.breaks == window.breaks


def test_a_hole_before_every_usable_backup_is_not_in_the_window():
    early = gap_line("000000030000000000000001", "000000030000000000000005")
    server = probed(early)
    window = recovery_window(server.cluster("shop"), server.stanzas["shop"].backups, server.gaps_for("shop"))
    assert window.breaks == ()


def test_a_target_past_the_hole_is_refused_and_one_before_it_is_planned():
    server = probed(gap_line())
    with pytest.raises(Refusal, match=r"is past a hole in shop's archived WAL: 3 segments after 00000003") as info:
        plan_pitr("sbx1", server, PitrRequest("shop", to=HOLE + timedelta(seconds=1)), "me")
    assert info.value.hint == f"pick a target before {HOLE.isoformat(timespec='seconds')}"
    plan = plan_pitr("sbx1", server, PitrRequest("shop", to=HOLE - timedelta(seconds=2)), "me")
    assert plan.plan.steps


def test_a_backup_after_the_hole_restores_the_window_past_it_and_status_is_green_again():
    server = probed(gap_line())
    stanza = server.stanzas["shop"]
    after = replace(
        stanza.backups[-1],
        label="20261124-004937F",
        start=HOLE + timedelta(seconds=2),
        stop=HOLE + timedelta(seconds=3),
        wal_start="000000030000000000000010",
        wal_stop="000000030000000000000010",
    )
    server = replace(server, stanzas={**server.stanzas, "shop": replace(stanza, backups=(*stanza.backups, after))})
    window = recovery_window(server.cluster("shop"), server.stanzas["shop"].backups, server.gaps_for("shop"))
    (hole,) = window.breaks
    assert hole.end == after.stop
    (cluster,) = [c for c in health.assess(Host("sbx1", "10.0.0.1"), server).clusters if c.app == "shop"]
    assert not [p for p in cluster.problems if "WAL segments missing" in p]
    assert cluster.recovery_window["breaks"][0]["to"] == after.stop.isoformat()  # type: ignore[index]
    plan = plan_pitr("sbx1", server, PitrRequest("shop", to=HOLE + timedelta(seconds=4)), "me")
    assert after.label in " ".join(s.title for s in plan.plan.steps)
    with pytest.raises(Refusal) as info:  # between the hole and the backup after it: nothing reaches it
        plan_pitr("sbx1", server, PitrRequest("shop", to=HOLE + timedelta(seconds=1)), "me")
    assert (
        info.value.hint
        == f"pick a target before {HOLE.isoformat()} or after {after.stop.isoformat()} (a backup taken after the hole)"
    )


def test_a_drill_past_the_hole_is_refused_too():
    server = probed(gap_line())
    with pytest.raises(Refusal, match="is past a hole in shop's archived WAL"):
        verify.plan_verify("sbx1", server, "shop", HOLE + timedelta(seconds=1), "me")
    assert verify.plan_verify("sbx1", server, "shop", HOLE - timedelta(seconds=2), "me").backup == "20261124-004929F"
