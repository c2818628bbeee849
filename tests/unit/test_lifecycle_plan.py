"""Backup lifecycle planning: calendars, schedules, drops, the backup list and the drill (pure)."""

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pgmam_remote import facts
from pgmam_remote.command import job_line
from pgmam_remote.errors import Refusal
from pgmam_remote.job import render_script
from pgmam_remote.ops import backup, drop, schedule, verify
from pgmam_remote.server_code import CODE_DIR

from .conftest import load


@pytest.fixture
def server() -> facts.ServerFacts:
    return facts.parse_probe(load("probe-after-rollback.txt"))


@pytest.mark.parametrize(
    ("text", "cron", "systemd"),
    [
        ("Sun 03:00", "0 3 * * 0", "Sun *-*-* 03:00:00"),
        ("Mon..Sat 03:00", "0 3 * * 1,2,3,4,5,6", "Mon,Tue,Wed,Thu,Fri,Sat *-*-* 03:00:00"),
        ("Sat,Sun 4:05", "5 4 * * 6,0", "Sat,Sun *-*-* 04:05:00"),
        ("Fri..Mon 23:59", "59 23 * * 1,5,6,0", "Mon,Fri,Sat,Sun *-*-* 23:59:00"),
        ("daily", "0 0 * * *", "*-*-* 00:00:00"),
        ("hourly", "0 * * * *", "*-*-* *:00:00"),
        ("weekly", "0 0 * * 1", "Mon *-*-* 00:00:00"),
        ("monthly", "0 0 1 * *", "*-*-01 00:00:00"),
        ("02:30", "30 2 * * *", "*-*-* 02:30:00"),
    ],
)
def test_calendars_render_for_cron_and_systemd(text, cron, systemd):
    cal = schedule.parse_calendar(text)
    assert cal.cron() == cron and cal.systemd() == systemd


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(
    "text", ["Sun 03:00", "Mon..Sat 03:00", "Fri..Mon 23:59", "hourly", "weekly", "monthly", "02:30"]
)
def test_systemd_parses_our_timers_and_agrees_on_the_next_run(text, tmp_path):
    """The systemd path cannot run in the sandbox (PID 1 is not systemd): systemd's own tools check it."""
    cal = schedule.parse_calendar(text)
    base = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
    out = subprocess.run(
        ["systemd-analyze", "calendar", "--base-time=2026-11-25 12:30:00 UTC", cal.systemd()],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        check=True,
    ).stdout
    elapse = re.search(r"Next elapse: \w+ (\S+ \S+) UTC", out)
    assert elapse, out
    assert datetime.fromisoformat(elapse[1] + "+00:00") == cal.next_after(base)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit_files(server, tmp_path):
    cals = {"full": schedule.parse_calendar("Sun 03:00"), "verify": schedule.parse_calendar("Sun 05:00")}
    plan = schedule.plan_schedule("h", replace(server, systemd=True), "shop", cals)
    units = []
    for step in plan.steps:
        path = step.command.argv[1] if len(step.command.argv) > 1 else ""
        if path.startswith("/etc/systemd/system/"):
            unit = tmp_path / path.rsplit("/", 1)[1]
            unit.write_text(step.command.argv[-1])
            units.append(str(unit))
    assert len(units) == 4
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text", ["someday", "25:00", "Sun", "Funday 03:00", "03:60", "", "0 3 * * *"])
def test_bad_calendars_are_refused_with_the_forms_that_work(text):
    with pytest.raises(Refusal) as info:
        schedule.parse_calendar(text)
    assert "Mon..Fri 02:30" in info.value.hint


def test_next_run():
    wednesday_noon = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert schedule.parse_calendar("Sun 03:00").next_after(wednesday_noon) == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert schedule.parse_calendar("12:00").next_after(wednesday_noon) == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert schedule.parse_calendar("hourly").next_after(wednesday_noon) == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


def test_schedule_without_systemd_writes_one_cron_file(server):
    cals = {k: schedule.parse_calendar(v) for k, v in schedule.DEFAULTS.items()}
    plan = schedule.plan_schedule("sbx1", replace(server, tools={**server.tools, "cron": True}), "shop", cals)
    cron = plan.steps[-1].command.argv[4]  # the file content handed to write_file
    assert f"0 3 * * 0 root /bin/sh {CODE_DIR}/scheduled-run.sh shop full" in cron
    assert f"0 3 * * 1,2,3,4,5,6 root /bin/sh {CODE_DIR}/scheduled-run.sh shop diff" in cron
    assert "# pgmam-schedule app=shop type=full calendar=Sun_03:00" in cron
    # each kind's job is written beside it, after the old schedule is removed
    written = [list(s.command.argv[1:3]) for s in plan.steps if "/var/lib/pgmam/schedules/shop" in s.command.argv]
    assert written == [["/var/lib/pgmam/schedules/shop", "full"], ["/var/lib/pgmam/schedules/shop", "diff"]]
    assert plan.steps[0].title == "remove shop's current schedule"


def test_schedule_with_systemd_writes_timers(server):
    cals = {"incr": schedule.parse_calendar("hourly")}
    plan = schedule.plan_schedule("h", replace(server, systemd=True), "shop", cals)
    titles = [s.title for s in plan.steps]
    assert "write pgmam-schedule-shop-incr.timer (hourly)" in titles
    assert plan.steps[-1].command.argv[-1] == "pgmam-schedule-shop-incr.timer"


def test_scheduled_drill_is_the_verify_drill_with_run_time_slots(server):
    """The template differs from `inv verify`'s plan only where the server fills in run-time facts."""
    shop = server.cluster("shop")
    scheduled = schedule.job_spec("sbx1", shop, "verify")
    assert scheduled.op == "verify" and scheduled.job_id == "verify-shop-@PGMAM_STAMP@"
    assert scheduled.info["mode"] == "scheduled" and scheduled.holder == "schedule"
    script = render_script(scheduled)
    for slot in (verify.STAMP_SLOT, verify.BACKUP_SLOT, verify.PORT_SLOT):
        assert slot in script
    filled = script.replace(verify.STAMP_SLOT, "20261124T010000Z").replace(verify.BACKUP_SLOT, "20261124-004929F")
    filled = filled.replace(verify.PORT_SLOT, "35432")
    on_demand = verify.plan_verify("sbx1", server, "shop", None, "me").plan
    on_demand_steps = [job_line(s.command) for s in on_demand.steps]
    stamp = on_demand.steps[-1].command.argv[-1].rsplit("-", 1)[-1]
    port = on_demand.steps[1].title.split("port ")[1].split(",")[0]
    expected = [line.replace(stamp, "20261124T010000Z").replace(port, "35432") for line in on_demand_steps]
    assert [line for line in expected if shlex.quote(line) not in filled] == []
    steps = filled  # the drill's own steps never name the live cluster or its data
    assert "/var/lib/postgresql/15/shop " not in steps and "pg_ctlcluster" not in steps
    assert subprocess.run(["sh", "-n"], input=filled, text=True, check=False).returncode == 0


def test_scheduled_backup_job_is_the_backup_command(server):
    spec = schedule.job_spec("sbx1", server.cluster("shop"), "full")
    assert spec.op == "backup" and spec.job_id == "backup-shop-@PGMAM_STAMP@"
    assert [s.command for s in spec.plan.steps] == [
        backup.backup_command("shop", server.cluster("shop").version, "full")
    ]


def test_schedule_refused_without_cron_or_systemd(server):
    cals = {"full": schedule.parse_calendar("daily")}
    with pytest.raises(Refusal, match="cron is not installed"):
        schedule.plan_schedule("h", replace(server, tools={**server.tools, "cron": False}), "shop", cals)


def test_scheduled_runs_and_drills_are_read_from_the_probe():
    text = (
        "@@parents\n/etc/pgbackrest/conf.d/shop_dev.conf:# pgmam-parent shop\n"
        "@@scheduled-runs\nshop 1795483186 0 incr 20261124-011937F_20261124-011947I 3\n"
        "blog 1795483190 47 full - 1\n"
        "@@drills\nshop 1795483256 ok 20261124-011937F 1 1000 ok latest\n"
        "@@schedules\n# pgmam-schedule app=shop type=full calendar=Sun_03:00\n"
    )
    parsed = facts.parse_probe(text)
    assert [(r.app, r.exit_status, r.type) for r in parsed.scheduled_runs] == [
        ("shop", 0, "incr"),
        ("blog", 47, "full"),
    ]
    assert parsed.drills[0].ok and parsed.drills[0].rows == "1000"
    assert parsed.schedules[0].calendar == "Sun 03:00"
    assert parsed.parents == {"shop_dev": "shop"}


def test_backups_list_marks_abandoned_timelines_and_the_window(server):
    rows, window = backup.list_backups("sbx1", server, "shop")
    assert [(r.label, r.restorable) for r in rows] == [("20261124-004539F", False), ("20261124-004929F", True)]
    assert window.start == server.stanzas["shop"].backups[1].stop
    assert backup.default_type(server, "shop", None) == "incr"
    with pytest.raises(Refusal):
        backup.default_type(server, "shop", "weekly")


def test_verify_drill_never_touches_the_live_cluster(server):
    plan = verify.plan_verify("sbx1", server, "shop", None, "me")
    assert plan.backup == "20261124-004929F"
    for step in plan.plan.steps:
        line = " ".join(step.command.argv)
        assert "/var/lib/postgresql/15/shop " not in line and "pg_ctlcluster" not in line
    assert "--type=immediate" in plan.plan.steps[0].command.argv
    assert plan.plan.steps[0].undo is not None  # a failed drill is recorded and cleaned up
    assert plan.plan.steps[-1].title.startswith("remove /var/lib/postgresql/15/verify-shop-")


def test_drop_keeps_backups_and_guards_branches(server):
    shop = server.cluster("shop")
    branch = replace(shop, name="shop_dev", port=5440, data_dir="/var/lib/postgresql/15/shop_dev")
    with_branch = replace(
        server,
        clusters=(shop, branch),
        managed_stanzas=server.managed_stanzas | {"shop_dev"},
        parents={"shop_dev": "shop"},
    )
    not_a_branch = replace(with_branch, parents={})  # an app that merely starts with "shop_"
    assert drop.plan_drop("sbx1", not_a_branch, ["shop"], purge=False).steps
    with pytest.raises(Refusal, match="shop has branches: shop_dev"):
        drop.plan_drop("sbx1", with_branch, ["shop"], purge=False)
    plan = drop.plan_drop("sbx1", with_branch, ["shop", "shop_dev"], purge=False)
    titles = [s.title for s in plan.steps]
    assert titles.index("drop cluster 15/shop_dev") < titles.index("drop cluster 15/shop")
    assert not any("delete stanza" in t for t in titles)
    assert titles[0].startswith("final backup of shop_dev")
    purge = drop.plan_drop("sbx1", server, ["shop"], purge=True)
    assert purge.steps[-1].title == "delete stanza shop, its backups and config snapshots"


def test_next_run_is_in_server_local_time_reported_in_utc(server):
    east = replace(server, now=datetime(2026, 11, 25, 12, 0, tzinfo=UTC), utc_offset_minutes=60)
    assert schedule.next_run(schedule.parse_calendar("03:00"), east) == datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
