"""The watchdog's decisions (pure), its config, its metrics, `inv check`'s verdicts, and the
shipped modules running on nothing but the standard library."""

from __future__ import annotations

import ast
import base64
import gzip
import io
import re
import subprocess
import sys
import tarfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgmam_remote import facts, health, metrics, server_code, watchdog
from pgmam_remote.errors import InventoryError
from pgmam_remote.inventory import Host, parse
from pgmam_remote.ops.watch import CRITICAL, OK, UNKNOWN, WARNING, CheckResult, check_result
from pgmam_remote.timetable import parse_calendar

from .conftest import load

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
REMIND = timedelta(hours=4)
BROKEN = {"app1": ["WAL archiving failing since 2026-12-03T09:59:00+00:00"]}


def run(known: dict, problems: dict, now: datetime, delivered: bool = True) -> tuple[list, dict]:
    """One watchdog run on one channel: what it says, and the state it leaves."""
    messages = watchdog.decide(known, problems, now, REMIND, "prod1")
    return messages, watchdog.advance(known, problems, now, [(m, delivered) for m in messages])


def test_one_alert_when_an_app_turns_unhealthy_then_silence_then_a_reminder():
    said, state = run({}, BROKEN, T0)
    assert [(m.kind, m.app, m.since) for m in said] == [("unhealthy", "app1", "2026-12-03T10:00:00+00:00")]
    for minutes in (5, 10, 235):
        said, state = run(state, BROKEN, T0 + timedelta(minutes=minutes))
        assert said == []
    said, state = run(state, BROKEN, T0 + REMIND)
    assert [(m.kind, m.since) for m in said] == [("reminder", "2026-12-03T10:00:00+00:00")]
    assert said[0].title == "pgmam: prod1/app1 is still unhealthy since 2026-12-03T10:00:00+00:00"
    said, _ = run(state, BROKEN, T0 + REMIND + timedelta(minutes=5))
    assert said == []


def test_one_recovery_message_naming_what_was_wrong():
    _, state = run({}, BROKEN, T0)
    said, state = run(state, {}, T0 + timedelta(minutes=5))
    assert [(m.kind, m.problems) for m in said] == [("recovered", tuple(BROKEN["app1"]))]
    assert state == {}
    assert run(state, {}, T0 + timedelta(minutes=10))[0] == []


def test_what_a_channel_missed_is_sent_again_until_it_arrives():
    said, state = run({}, BROKEN, T0, delivered=False)
    assert len(said) == 1
    said, state = run(state, BROKEN, T0 + timedelta(minutes=5))  # the receiver is back
    assert [(m.kind, m.since) for m in said] == [("unhealthy", "2026-12-03T10:00:00+00:00")]
    said, state = run(state, {}, T0 + timedelta(minutes=10), delivered=False)
    assert [m.kind for m in said] == ["recovered"]
    said, state = run(state, {}, T0 + timedelta(minutes=15))
    assert [m.kind for m in said] == ["recovered"] and state == {}


def test_a_problem_never_told_and_gone_is_not_announced_as_a_recovery():
    _, state = run({}, BROKEN, T0, delivered=False)
    said, state = run(state, {}, T0 + timedelta(minutes=5))
    assert said == [] and state == {}


def test_each_app_and_the_server_are_told_apart():
    problems = {"": ["disk /var/lib/postgresql has only 1.0 GB free"], **BROKEN}
    said, _ = run({}, problems, T0)
    assert sorted(m.who for m in said) == ["prod1", "prod1/app1"]
    text = next(m for m in said if m.app == "app1").text()
    assert "prod1/app1 is unhealthy since 2026-12-03T10:00:00+00:00" in text
    assert "- WAL archiving failing" in text and "More: inv status --host prod1" in text


def test_a_webhook_is_named_without_its_secret_path():
    assert (
        watchdog.masked("https://hooks.example.com:8443/T000/B000/XXXX?token=s") == "https://hooks.example.com:8443/…"
    )
    assert watchdog.masked("ops@example.com") == "ops@example.com"


def test_config_travels_as_json_and_back():
    repos = (watchdog.RepoRef("v", "vault1", "vault1"),)
    config = watchdog.Config("prod1", "https://h.example.com/x", None, 120, 3600, 600, 7200, "/m", repos)
    assert watchdog.Config.parse(config.json()) == config
    assert config.channels() == {"webhook": "https://h.example.com/x"}


def test_the_watchdog_judges_with_the_same_problems_as_status():
    probed = facts.parse_probe(load("probe-one-app.txt"))
    cluster = probed.cluster("app1")
    failing = replace(
        cluster.archiver, failed_count=3, last_failed_time=probed.now, last_failed_wal="00000001000000000000000A"
    )
    probed = replace(probed, clusters=(replace(cluster, archiver=failing),))
    status = health.assess(Host("prod1", "10.0.0.1"), probed)
    assert watchdog.subjects(status) == {"app1": status.clusters[0].problems}
    assert status.clusters[0].problems == [
        "WAL archiving failing at 00000001000000000000000A (the last success at 2026-11-24T00:23:35+00:00)"
    ]


# -- what the checks say ------------------------------------------------------------------------


def one_app(**cluster_changes) -> facts.ServerFacts:
    probed = facts.parse_probe(load("probe-one-app.txt"))
    return replace(probed, clusters=(replace(probed.cluster("app1"), **cluster_changes),))


def test_a_cluster_down_on_purpose_is_no_problem_but_one_set_to_start_is():
    assert health.assess(Host("p", "p"), one_app(status="down", start="manual")).clusters[0].problems == []
    assert health.assess(Host("p", "p"), one_app(status="down")).clusters[0].problems == ["cluster is down"]


def scheduled(calendar: str, since_hours: float, hours_later: float, runs=()) -> list[str]:
    """app1's problems with a daily full backup scheduled ``since_hours`` before the last backup, seen
    ``hours_later`` after that backup."""
    probed = facts.parse_probe(load("probe-one-app.txt"))
    backup_end = probed.stanzas["app1"].backups[-1].stop
    entry = facts.ScheduleEntry("app1", "full", calendar, backup_end - timedelta(hours=since_hours))
    probed = replace(probed, now=backup_end + timedelta(hours=hours_later), schedules=(entry,), scheduled_runs=runs)
    return health.assess(Host("p", "p"), probed).clusters[0].problems


def test_a_scheduled_backup_that_did_not_run_is_overdue_after_the_grace():
    # the backup ended 00:23:35 on 11-24; the schedule says 03:00 daily
    assert scheduled("03:00", 1, 3.5) == []  # due 03:00, 1 h of grace not over at 03:59
    overdue = scheduled("03:00", 1, 3.7)
    assert overdue == [
        "scheduled full backup due at 2026-11-24T03:00:00+00:00 has not run "
        "(see systemctl list-timers 'pgmam-schedule-app1-*', or /etc/cron.d/pgmam-app1)"
    ]
    ran = facts.ScheduledRun("app1", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), 0, "full", "x", 30)
    assert scheduled("03:00", 1, 3.7, (ran,)) == []


def test_a_schedule_set_after_it_was_due_is_not_overdue():
    assert scheduled("00:00", -1, 3) == []  # set at 01:23, due at 00:00 before that


def test_without_a_schedule_a_backup_is_due_within_26_hours():
    assert scheduled("Sun 03:00", 1, 27) == []  # a weekly schedule: not due again before Sunday
    probed = one_app()
    late = replace(probed, now=probed.now + timedelta(hours=27))
    assert health.assess(Host("p", "p"), late).clusters[0].problems == ["last backup 1d ago"]


def test_the_last_run_of_a_calendar():
    sunday = parse_calendar("Sun 03:00")
    assert sunday.last_at_or_before(datetime(2026, 12, 3, 10, 0)) == datetime(2026, 11, 29, 3, 0)
    assert sunday.last_at_or_before(datetime(2026, 11, 29, 3, 0)) == datetime(2026, 11, 29, 3, 0)
    assert parse_calendar("hourly").last_at_or_before(datetime(2026, 12, 3, 10, 59)) == datetime(2026, 12, 3, 10, 0)
    assert parse_calendar("monthly").last_at_or_before(datetime(2026, 12, 3)) == datetime(2026, 12, 1)


def test_a_watchdog_that_stopped_or_cannot_deliver_shows_in_status():
    probed = one_app()
    record = facts.WatchdogRecord(
        probed.now - timedelta(minutes=30),
        300,
        {"webhook": {"ok": False, "target": "https://h.example.com/…", "error": "answered HTTP 500", "time": "t"}},
    )
    problems = health.assess(Host("p", "p"), replace(probed, watchdog=record)).problems
    assert problems[0].startswith("the watchdog has not run since")
    assert problems[1].startswith("alerts cannot be delivered: webhook https://h.example.com/… answered HTTP 500")
    assert health.assess(Host("p", "p"), replace(probed, watchdog=record), watchdog=False).problems == []


# -- metrics --------------------------------------------------------------------------------------


def test_metrics_match_the_status_they_come_from():
    probed = facts.parse_probe(load("probe-one-app.txt"))
    status = health.assess(Host("prod1", "10.0.0.1"), probed)
    text = metrics.render(status, probed, "2026-11-24T00:25:00+00:00", 300)
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    backup = probed.stanzas["app1"].backups[-1]
    assert values['pgmam_last_backup_timestamp_seconds{app="app1",type="full",repo="local"}'] == str(
        int(backup.stop.timestamp())
    )
    assert values['pgmam_cluster_up{app="app1"}'] == "1"
    assert values['pgmam_app_healthy{app="app1"}'] == "1"
    assert values['pgmam_archive_failed_total{app="app1"}'] == "0"
    assert values["pgmam_watchdog_last_run_timestamp_seconds"] == str(
        int(datetime(2026, 11, 24, 0, 25, tzinfo=UTC).timestamp())
    )
    window = status.clusters[0].recovery_window
    assert float(values['pgmam_recovery_window_end_timestamp_seconds{app="app1",repo="local"}']) == pytest.approx(
        datetime.fromisoformat(window["end"]).timestamp(), abs=0.001
    )
    for name, (kind, _) in metrics.METRICS.items():
        assert f"# TYPE {name} {kind}" in text
        assert name.startswith("pgmam_") and re.fullmatch(r"[a-z_]+", name)


def test_every_metric_is_documented():
    doc = (REPO / "docs" / "monitoring.md").read_text()
    missing = [name for name in metrics.METRICS if f"`{name}`" not in doc]
    assert not missing, f"docs/monitoring.md does not describe {missing}"


# -- inv check ------------------------------------------------------------------------------------


def test_check_says_ok_warning_critical_unknown():
    probed = one_app()
    healthy = health.assess(Host("prod1", "p"), probed)
    result = check_result(healthy)
    assert result.code == OK and result.line.startswith("PGMAM OK - prod1: 1 app healthy | apps=1 unhealthy=0 ")
    leftover = replace(healthy, clusters=[replace(healthy.clusters[0], problems=["leftover /x (1 GB): remove it"])])
    assert check_result(leftover).code == WARNING
    failing = replace(healthy, clusters=[replace(healthy.clusters[0], problems=["WAL archiving failing since t"])])
    critical = check_result(failing)
    assert critical.code == CRITICAL and "app1: WAL archiving failing since t" in critical.line
    assert check_result(failing, "app2").code == UNKNOWN
    down = health.HostStatus("prod1", "p", reachable=False, error="prod1: no answer within 5 s")
    assert check_result(down) == CheckResult(UNKNOWN, "PGMAM UNKNOWN - prod1: prod1: no answer within 5 s")


# -- [notify] and [watchdog] in the inventory ------------------------------------------------------

BASE = '[hosts.prod1]\naddress = "10.0.0.1"\n'


def test_notify_and_watchdog_settings_are_read():
    watch = parse(
        BASE + '[notify]\nwebhook = "https://h.example.com/T/B"\nemail = "ops@example.com"\n'
        '[watchdog]\nevery = "2min"\nremind = "1h"\ngrace = "30min"\n'
    ).watch
    assert (watch.webhook, watch.email, watch.every_seconds, watch.remind_seconds, watch.grace_seconds) == (
        "https://h.example.com/T/B",
        "ops@example.com",
        120,
        3600,
        1800,
    )
    assert parse(BASE).watch.every_seconds == 300


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[notify]\nwebhook = "ftp://h.example.com/SECRET"\n',
            "hosts.toml:5: webhook must be an http:// or https:// URL",
        ),
        ('[notify]\nhook = "https://h.example.com/SECRET"\n', "hosts.toml:5: unknown key 'hook' in [notify]"),
        ('[notify]\nemail = "ops"\n', "hosts.toml:5: email 'ops' is not an e-mail address"),
        ('[watchdog]\nevery = "5 parsecs"\n', "hosts.toml:5: every = '5 parsecs' is not a duration"),
        ('[watchdog]\nevery = "10s"\n', "hosts.toml:5: every must be between 1min and 1d"),
        ('[watchdog]\nevery = "1h"\nremind = "5min"\n', "hosts.toml:6: remind must be at least every"),
        ('[watchdog]\nmetrics_dir = "relative"\n', "hosts.toml:5: metrics_dir must be an absolute path"),
    ],
)
def test_bad_notify_or_watchdog_settings_are_refused_with_file_and_line(extra, message):
    with pytest.raises(InventoryError) as refused:
        parse(BASE + "\n" + extra, Path("hosts.toml"))
    assert refused.value.message.startswith(message)
    assert "SECRET" not in refused.value.message


# -- the modules that run on servers ----------------------------------------------------------------


def unpacked(tmp_path: Path) -> Path:
    raw = gzip.decompress(base64.b64decode(server_code.BUNDLE))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def test_the_watchdog_runs_from_the_bundle_with_the_standard_library_alone(tmp_path):
    code = unpacked(tmp_path)
    # -S: no site-packages (no fabric, rich, paramiko); -I: nothing from the checkout
    names = ", ".join(f"pgmam_remote.{m}" for m in server_code.SHIPPED_MODULES if m != "__init__")
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, 'py'); import {names}; print(sys.modules.keys())",
        ],
        cwd=code,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "fabric" not in done.stdout and "rich" not in done.stdout
    shown = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, 'py'); from pgmam_remote.watchdog import main; main(['--help'])",
        ],
        cwd=code,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0 and "run" in shown.stdout


def test_the_shipped_modules_need_no_python_newer_than_3_10():
    for name in server_code.SHIPPED_MODULES:
        source = (REPO / "pgmam_remote" / f"{name}.py").read_text()
        ast.parse(source, feature_version=(3, 10))
        for newer in ("from datetime import UTC", "tomllib", "typing import Self", "StrEnum"):
            assert newer not in source, f"{name}.py uses {newer} (Python 3.11), servers may have 3.10"


def test_the_bundle_fits_in_one_command_line_argument():
    assert len(server_code.BUNDLE) < 120_000  # Linux takes at most 128 KiB per argument


# -- a disk filling ---------------------------------------------------------------------------------


def test_a_disk_filling_steadily_is_forecast_full_and_one_that_is_not_is_not():
    gb = 10**9
    filling = [(t * 600.0, 50 * gb - t * gb) for t in range(7)]  # 6 GB an hour, 44 GB left
    found = health.forecast(filling)
    assert found == {"free_bytes": 44 * gb, "bytes_per_hour": 6 * gb, "hours_left": 7.3}
    problems = health.disk_problems({"/var/lib/postgresql": found}, timedelta(hours=24))
    assert problems == [
        "disk /var/lib/postgresql will be full in about 7h at the current rate (6.0 GB/h; 44.0 GB free)"
    ]
    assert health.disk_problems({"/": found}, timedelta(hours=6)) == []
    steady = [(t * 600.0, 50 * gb + (t % 2) * gb) for t in range(7)]  # WAL comes and goes
    assert health.forecast(steady)["hours_left"] is None
    assert health.forecast(filling[:2]) is None  # too short a look to say


def test_status_shows_the_watchdogs_forecast():
    probed = one_app()
    forecast = {"free_bytes": 10**9, "bytes_per_hour": 10**9, "hours_left": 1.0}
    record = facts.WatchdogRecord(probed.now, 300, {}, None, {"/var/lib/postgresql": forecast})
    (problem,) = health.assess(Host("p", "p"), replace(probed, watchdog=record)).problems
    assert problem.startswith("disk /var/lib/postgresql will be full in about 1h")


def test_a_scheduled_drill_that_did_not_run_is_overdue_and_one_that_ran_is_not():
    probed = facts.parse_probe(load("probe-one-app.txt"))
    set_at = probed.now - timedelta(days=8)
    entry = facts.ScheduleEntry("app1", "verify", "Sun 05:00", set_at)
    sunday = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)  # the 24th is a Tuesday
    later = replace(probed, schedules=(entry,), now=probed.now)
    (problem,) = [p for p in health.assess(Host("p", "p"), later).clusters[0].problems if "drill" in p]
    assert problem.startswith(f"scheduled restore drill due at {sunday.isoformat()} has not run")
    drilled = facts.DrillResult("app1", sunday + timedelta(minutes=3), True, "x", "3", "10", "ok")
    assert health.assess(Host("p", "p"), replace(later, drills=(drilled,))).clusters[0].problems == []


def test_a_new_problem_on_an_unhealthy_app_is_told_at_once_a_changing_age_is_not():
    aging = {"app1": ["last backup 27h ago"]}
    _, state = run({}, aging, T0)
    said, state = run(state, {"app1": ["last backup 28h ago"]}, T0 + timedelta(hours=1))
    assert said == []
    worse = {"app1": ["last backup 29h ago", *BROKEN["app1"]]}
    said, state = run(state, worse, T0 + timedelta(hours=2))
    assert [(m.kind, m.since, m.problems) for m in said] == [
        ("unhealthy", "2026-12-03T10:00:00+00:00", tuple(worse["app1"]))
    ]
    assert run(state, worse, T0 + timedelta(hours=2, minutes=5))[0] == []
