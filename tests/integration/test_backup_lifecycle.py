"""backup, backups, schedule and verify over real SSH against sandbox servers.

What matters: a backup of the asked type lands in the stanza with the app's config snapshot
beside it; `backups` lists them in order with a recovery window that follows the archived WAL;
refusals change nothing; a scheduled run (triggered by hand: the sandbox runs no cron daemon)
backs up and records its result where `status` shows it, a failed one turning status red; a
restore drill proves a good repository without touching the live cluster, fails loudly on a
damaged one, and uses the config the backup was taken with.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from datetime import datetime, timedelta

import pytest

import pgmam_sandbox as sandbox

# The lane for servers without systemd: schedules are cron lines, run here in cron's environment.
# The systemd path (timers that really fire) is in test_systemd.py.
SYSTEMD_SERVERS = False

PG = "/var/lib/postgresql/15"
SNAPSHOTS = "/var/lib/pgbackrest/pgmam-config"
SCHEDULED = "/var/lib/pgmam/scheduled"
VERIFIED = "/var/lib/pgmam/verify"
JOBS = "/var/lib/pgmam/jobs"
LOCKS = "/var/lib/pgmam/locks"
NOW_UTC = "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
CHECKSUM_T = "select count(*) || ':' || coalesce(md5(string_agg(id || '=' || v, ',' order by id)), '-') from t"
SUFFIX = {"full": "F", "diff": "D", "incr": "I"}
# What cron(8) gives a job: /bin/sh -c, a minimal environment and PATH=/usr/bin:/bin
# (Vixie cron's default; /etc/crontab's PATH= line applies to /etc/crontab only).
CRON_ENV = ["env", "-i", "SHELL=/bin/sh", "HOME=/root", "LOGNAME=root", "PATH=/usr/bin:/bin", "/bin/sh", "-c"]


# -- helpers: the test's own eyes, never through pgmam -------------------------------------


def make_app(box, inv, server: str, app: str, port: int, rows: int = 0) -> None:
    """An app made by pgmam, with a table t(id, v) holding ``rows`` rows."""
    out = inv("initcluster", "--host", server, "--app", app, "--port", str(port))
    assert out.returncode == 0, out.stderr
    box.psql(server, port, "create table if not exists t (id int primary key, v text)")
    if rows:
        insert(box, server, port, 1, rows)


def insert(box, server: str, port: int, first: int, last: int) -> None:
    box.psql(server, port, f"insert into t select g, md5(g::text) from generate_series({first}, {last}) g")


def labels(box, server: str, app: str) -> list[str]:
    return [b["label"] for b in box.backup_info(server, app).get("backup", [])]


def all_labels(box, server: str) -> dict[str, list[str]]:
    """Every stanza's backup labels on a server (pgbackrest info of all stanzas)."""
    argv = ["runuser", "-u", "postgres", "--", "pgbackrest", "--output=json", "info"]
    raw = json.loads(box.on(server, "sh", "-c", 'cd /tmp && exec "$@"', "sh", *argv).stdout)
    return {s["name"]: [b["label"] for b in s.get("backup", [])] for s in raw}


def ls(box, server: str, path: str) -> list[str]:
    return sorted(box.on(server, "sh", "-c", 'ls -1 "$1" 2>/dev/null || true', "sh", path).stdout.split())


def cat(box, server: str, path: str) -> str:
    return box.on(server, "cat", path).stdout


def exists(box, server: str, path: str) -> bool:
    return box.on(server, "test", "-e", path, check=False).returncode == 0


def backups_json(inv, server: str, app: str) -> dict:
    out = inv("backups", "--host", server, "--app", app, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def status_of(inv, server: str, app: str) -> tuple[int, dict]:
    """(exit status of `inv status --host S --json`, the app's cluster entry)."""
    out = inv("status", "--host", server, "--json")
    clusters = json.loads(out.stdout)["hosts"][0]["clusters"]
    return out.returncode, next(c for c in clusters if c["app"] == app)


def server_now(box, server: str, port: int) -> datetime:
    return datetime.fromisoformat(box.psql(server, port, NOW_UTC))


def started_at(box, server: str, port: int) -> str:
    return box.psql(server, port, "select pg_postmaster_start_time()")


def drill_dirs(box, server: str, app: str) -> list[str]:
    return [n for n in ls(box, server, PG) if n.startswith(f"verify-{app}-")]


def cron_entries(text: str) -> dict[str, tuple[str, str]]:
    """A cron.d file -> {backup type: (the five time fields, the command after the user)}."""
    entries = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("PATH="):
            continue
        fields = line.split(None, 6)
        assert fields[5] == "root", line
        kind = fields[6].split()[-1]
        assert kind not in entries, text
        entries[kind] = (" ".join(fields[:5]), fields[6])
    return entries


def last_result(box, server: str, app: str) -> list[str]:
    """The newest line of the scheduled-run record: epoch rc type label seconds."""
    lines = cat(box, server, f"{SCHEDULED}/{app}").splitlines()
    assert lines, "no scheduled run recorded"
    return lines[-1].split()


def job_dump(box, server: str, app: str, op: str = "verify") -> str:
    """The newest job of an app: its journal, runner log and step logs (for failure messages)."""
    script = 'd=$(ls -1d "$1/$2-$3-"* 2>/dev/null | tail -n 1) && head -n 200 "$d/journal" "$d"/*.log'
    return box.on(server, "sh", "-c", script, "sh", JOBS, op, app, check=False).stdout


def verify(box, inv, server: str, app: str, *args: str):
    return inv("verify", "--host", server, "--app", app, *args)


def restores_line(out) -> re.Match[str]:
    found = re.search(r"backup (\S+) restores: (\d+) tables, (\d+) rows, amcheck (\S+)", out.stderr)
    assert found, out.stderr
    return found


# -- 1. backup types, the list and the recovery window, snapshots, --all-apps ----------------


def test_backup_types_list_window_and_snapshots(box, inv):
    app, port = "bl_types", 5611
    make_app(box, inv, "sbx1", app, port, rows=500)
    taken = []
    for args, kind in (((), "incr"), (("--type", "diff"), "diff"), (("--type", "full"), "full")):
        out = inv("backup", "--host", "sbx1", "--app", app, *args)
        assert out.returncode == 0, out.stderr
        label = labels(box, "sbx1", app)[-1]
        assert label.endswith(SUFFIX[kind]), (kind, label)
        assert f"{app}: {kind} backup {label}" in out.stderr
        assert box.backup_info("sbx1", app)["backup"][-1]["type"] == kind
        taken.append(label)
        # a job like any other: it held the app's lock, released it, and left an audit line
        assert not exists(box, "sbx1", f"{LOCKS}/{app}")
        audit = cat(box, "sbx1", "/var/log/pgmam/audit.log").splitlines()[-1]
        assert f"op=backup app={app} " in audit and f"type={kind} mode=on-demand result=ok" in audit, audit
        insert(box, "sbx1", port, 1000 * len(taken), 1000 * len(taken) + 99)

    before = backups_json(inv, "sbx1", app)
    rows = before["backups"]
    assert before["app"] == app
    assert [r["label"] for r in rows] == labels(box, "sbx1", app)
    assert [r["type"] for r in rows] == ["full", "incr", "diff", "full"]
    assert [r["label"] for r in rows][1:] == taken
    for row in rows:
        assert row["label"].endswith(SUFFIX[row["type"]])
        assert row["restorable"] is True and row["timeline"] == 1
        assert row["size_bytes"] > 0 and row["repo_size_bytes"] > 0
        assert row["wal_start"] <= row["wal_stop"]
        assert datetime.fromisoformat(row["start"]) <= datetime.fromisoformat(row["stop"])
    for earlier, later in itertools.pairwise(rows):
        assert datetime.fromisoformat(earlier["stop"]) <= datetime.fromisoformat(later["start"])
    window = before["recovery_window"]
    assert window["start"] == rows[0]["stop"]  # the oldest backup's end
    assert datetime.fromisoformat(window["end"]) >= datetime.fromisoformat(rows[-1]["stop"])

    # more writes and a backup: the window's end follows the archived WAL forward
    insert(box, "sbx1", port, 10000, 10999)
    out = inv("backup", "--host", "sbx1", "--app", app)
    assert out.returncode == 0, out.stderr
    after = backups_json(inv, "sbx1", app)
    assert len(after["backups"]) == 5 and after["backups"][-1]["type"] == "incr"
    assert after["recovery_window"]["start"] == window["start"]
    assert datetime.fromisoformat(after["recovery_window"]["end"]) > datetime.fromisoformat(window["end"])

    # the table says the same
    table = inv("backups", "--host", "sbx1", "--app", app)
    assert table.returncode == 0, table.stderr
    assert all(r["label"] in table.stdout for r in after["backups"])

    # one config snapshot per backup, named after its label, holding the app's config dir
    every = [r["label"] for r in after["backups"]]
    assert ls(box, "sbx1", f"{SNAPSHOTS}/{app}") == sorted(f"{label}.tar.gz" for label in every)
    listing = box.on("sbx1", "tar", "-tzf", f"{SNAPSHOTS}/{app}/{every[-1]}.tar.gz").stdout.split()
    assert f"{app}/postgresql.conf" in listing and f"{app}/conf.d/pgmam.conf" in listing


def test_all_apps_backs_up_every_app_on_the_server(box, inv):
    apps = {"bl_every1": 5621, "bl_every2": 5622}
    for app, port in apps.items():
        make_app(box, inv, "sbx2", app, port, rows=100)
    on_server = {line.split()[1] for line in box.clusters("sbx2")}
    assert set(apps) <= on_server
    before = all_labels(box, "sbx2")

    out = inv("backup", "--host", "sbx2", "--all-apps")
    assert out.returncode == 0, out.stderr
    after = all_labels(box, "sbx2")
    for app in on_server:  # every pgmam app on sbx2, not only ours
        new = after[app][len(before[app]) :]
        assert after[app][: len(before[app])] == before[app]
        assert len(new) == 1 and new[0].endswith("I"), (app, new)
        assert f"{app}: incr backup {new[0]}" in out.stderr
        assert f"{new[0]}.tar.gz" in ls(box, "sbx2", f"{SNAPSHOTS}/{app}")


# -- 2. refusals change nothing --------------------------------------------------------------


@pytest.fixture(scope="module")
def refuse_app(box, inv):
    make_app(box, inv, "sbx1", "bl_refuse", 5615)
    return "bl_refuse"


def server_state(box, server: str) -> tuple:
    return (
        all_labels(box, server),
        ls(box, server, "/etc/cron.d"),
        ls(box, server, SNAPSHOTS),
        ls(box, server, f"{SNAPSHOTS}/bl_refuse"),
        ls(box, server, SCHEDULED),
        ls(box, server, VERIFIED),
        ls(box, server, JOBS),
        box.clusters(server),
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        # a few end to end; every refusal runs in-process on a recorded server in tests/unit/test_refusals.py
        (["backup", "--app", "bl_nosuch"], 1, "no cluster named bl_nosuch"),
        (["schedule", "--app", "bl_refuse", "--full", "someday"], 1, "schedule 'someday' is not understood"),
        (["verify", "--app", "bl_refuse", "--to", "2999-01-01 00:00:00+00"], 1, "is in the future"),
    ],
)
def test_refusals_change_nothing(box, inv, refuse_app, args, code, message):
    before = server_state(box, "sbx1")
    out = inv(args[0], "--host", "sbx1", *args[1:])
    assert out.returncode == code, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert server_state(box, "sbx1") == before


# -- 3. schedule: cron entries, a triggered run, its record in status, failure, removal ------


def test_schedule_cron_entries_triggered_runs_and_status(box, inv):
    app, port = "bl_sched", 5631
    cron = f"/etc/cron.d/pgmam-{app}"
    make_app(box, inv, "sbx1", app, port, rows=100)

    out = inv("schedule", "--host", "sbx1", "--app", app)
    assert out.returncode == 0, out.stderr
    entries = cron_entries(cat(box, "sbx1", cron))
    assert {kind: when for kind, (when, _) in entries.items()} == {"full": "0 3 * * 0", "diff": "0 3 * * 1,2,3,4,5,6"}
    # cron skips files that are group/other writable or not owned by root
    assert box.on("sbx1", "stat", "-c", "%U %a", cron).stdout.split() == ["root", "644"]

    asked = ("--full", "Sun 02:00", "--diff", "Mon..Sat 02:00", "--incr", "hourly")
    out = inv("schedule", "--host", "sbx1", "--app", app, *asked)
    assert out.returncode == 0, out.stderr
    first = cat(box, "sbx1", cron)
    again = inv("schedule", "--host", "sbx1", "--app", app, *asked)
    assert again.returncode == 0, again.stderr
    assert cat(box, "sbx1", cron) == first  # idempotent
    entries = cron_entries(first)
    assert {kind: when for kind, (when, _) in entries.items()} == {
        "full": "0 2 * * 0",
        "diff": "0 2 * * 1,2,3,4,5,6",
        "incr": "0 * * * *",
    }
    assert ls(box, "sbx1", "/etc/cron.d").count(f"pgmam-{app}") == 1

    earliest = server_now(box, "sbx1", port).replace(microsecond=0)
    code, cluster = status_of(inv, "sbx1", app)
    latest = server_now(box, "sbx1", port)  # status read the server clock in between
    assert {s["type"]: s["calendar"] for s in cluster["schedule"]} == {
        "full": "Sun 02:00",
        "diff": "Mon..Sat 02:00",
        "incr": "hourly",
    }
    for entry in cluster["schedule"]:
        upcoming = datetime.fromisoformat(entry["next"])
        assert earliest < upcoming <= latest + timedelta(days=7), entry
        if entry["type"] == "incr":
            assert upcoming.minute == 0 and upcoming <= latest + timedelta(hours=1), entry
        else:
            assert (upcoming.hour, upcoming.minute) == (2, 0), entry  # the server's clock is UTC
    assert cluster["last_scheduled"] is None

    # cron fires the incr line: run its command as cron would start it
    incr_command = entries["incr"][1]
    before = labels(box, "sbx1", app)
    insert(box, "sbx1", port, 1000, 1099)
    run = box.on("sbx1", "sh", "-c", incr_command, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    now_labels = labels(box, "sbx1", app)
    assert now_labels[: len(before)] == before and len(now_labels) == len(before) + 1
    new = now_labels[-1]
    assert new.endswith("I")
    started, rc, kind, label, _seconds = last_result(box, "sbx1", app)
    assert (rc, kind, label) == ("0", "incr", new)
    assert f"incr backup of {app}" in cat(box, "sbx1", f"/var/log/pgmam/scheduled-{app}.log")
    assert f"{new}.tar.gz" in ls(box, "sbx1", f"{SNAPSHOTS}/{app}")
    code, cluster = status_of(inv, "sbx1", app)
    assert cluster["last_scheduled"]["ok"] is True, cluster
    assert cluster["last_scheduled"]["label"] == new and cluster["last_scheduled"]["type"] == "incr"
    assert datetime.fromisoformat(cluster["last_scheduled"]["time"]).timestamp() == int(started)
    assert cluster["last_backup"]["label"] == new
    assert not any("scheduled" in p for p in cluster["problems"]), cluster["problems"]

    # a scheduled run that fails: the repository refuses the new backup's files
    repo = f"/var/lib/pgbackrest/backup/{app}"
    mode = box.on("sbx1", "stat", "-c", "%a", repo).stdout.strip()
    box.on("sbx1", "chmod", "0500", repo)
    try:
        failed = box.on("sbx1", "sh", "-c", incr_command, check=False)
    finally:
        box.on("sbx1", "chmod", mode, repo)
    assert failed.returncode != 0
    assert labels(box, "sbx1", app) == now_labels
    _, rc, kind, label, _ = last_result(box, "sbx1", app)
    assert rc != "0" and kind == "incr" and label == "-"
    code, cluster = status_of(inv, "sbx1", app)
    assert code == 1
    assert cluster["last_scheduled"]["ok"] is False and cluster["healthy"] is False
    assert any("scheduled incr backup failed" in p for p in cluster["problems"]), cluster["problems"]
    table = inv("status", "--host", "sbx1")
    assert table.returncode == 1 and "scheduled incr backup failed" in table.stdout

    # the next run succeeds again: status stops complaining
    run = box.on("sbx1", "sh", "-c", incr_command, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    code, cluster = status_of(inv, "sbx1", app)
    assert cluster["last_scheduled"]["ok"] is True
    assert not any("scheduled" in p for p in cluster["problems"]), cluster["problems"]

    # --remove (a dry run first changes nothing)
    dry = inv("schedule", "--host", "sbx1", "--app", app, "--remove", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert cat(box, "sbx1", cron) == first
    out = inv("schedule", "--host", "sbx1", "--app", app, "--remove")
    assert out.returncode == 0, out.stderr
    assert not exists(box, "sbx1", cron)
    code, cluster = status_of(inv, "sbx1", app)
    assert cluster["schedule"] == []


def test_scheduled_run_works_in_crons_environment(box, inv):
    """cron starts the line with PATH=/usr/bin:/bin, not root's login PATH."""
    app, port = "bl_cronenv", 5635
    make_app(box, inv, "sbx1", app, port)
    out = inv("schedule", "--host", "sbx1", "--app", app, "--incr", "hourly")
    assert out.returncode == 0, out.stderr
    command = cron_entries(cat(box, "sbx1", f"/etc/cron.d/pgmam-{app}"))["incr"][1]
    before = labels(box, "sbx1", app)
    run = box.on("sbx1", *CRON_ENV, command, check=False)
    log = cat(box, "sbx1", f"/var/log/pgmam/scheduled-{app}.log")
    assert run.returncode == 0, log
    assert len(labels(box, "sbx1", app)) == len(before) + 1
    assert last_result(box, "sbx1", app)[1] == "0"


def lock_info(box, server: str, app: str) -> dict[str, str]:
    text = box.on(server, "sh", "-c", 'cat "$1/info" "$1/pid" 2>/dev/null || true', "sh", f"{LOCKS}/{app}").stdout
    lines = text.splitlines()
    info = dict(line.split("=", 1) for line in lines if "=" in line)
    if lines and lines[-1].isdigit():
        info["pid"] = lines[-1]
    return info


def test_scheduled_runs_skip_a_busy_app_and_hold_its_lock_themselves(box, inv):
    app, port = "bl_busy", 5639
    make_app(box, inv, "sbx1", app, port, rows=10)
    out = inv("schedule", "--host", "sbx1", "--app", app, "--incr", "hourly")
    assert out.returncode == 0, out.stderr
    incr = cron_entries(cat(box, "sbx1", f"/etc/cron.d/pgmam-{app}"))["incr"][1]
    before = labels(box, "sbx1", app)

    # a pitr (here: a stand-in) holds the app: the scheduled backup is skipped, the lock left alone
    with box.fake_job("sbx1", app) as holder:
        run = box.on("sbx1", *CRON_ENV, incr, check=False)
        assert run.returncode == 75, run.stdout + run.stderr
        assert lock_info(box, "sbx1", app)["pid"] == str(holder)
    assert labels(box, "sbx1", app) == before
    assert last_result(box, "sbx1", app)[1:4] == ["75", "incr", "-"]
    _, cluster = status_of(inv, "sbx1", app)
    assert not any("scheduled" in p for p in cluster["problems"]), cluster["problems"]

    # the scheduled backup holds the lock while it runs (frozen here): pitr and backup are refused
    runner = subprocess.Popen(sandbox.netns_exec_argv(box.server("sbx1"), [*CRON_ENV, incr]), start_new_session=True)
    frozen = None
    try:
        deadline = time.monotonic() + 60
        while lock_info(box, "sbx1", app).get("op") != "backup" or "pid" not in lock_info(box, "sbx1", app):
            assert time.monotonic() < deadline and runner.poll() is None, "the scheduled run never took the lock"
            time.sleep(0.05)
        frozen = lock_info(box, "sbx1", app)["pid"]
        box.on("sbx1", "kill", "-STOP", frozen)
        assert lock_info(box, "sbx1", app).get("who") == "schedule"
        live = (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T))
        out = inv("pitr", "--host", "sbx1", "--app", app, "--to", server_now(box, "sbx1", port).isoformat(), "--yes")
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"{app} is busy: backup of {app} by schedule" in out.stderr, out.stderr
        out = inv("backup", "--host", "sbx1", "--app", app)
        assert out.returncode == 1 and "busy" in out.stderr, out.stderr
        assert (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T)) == live
    finally:
        if frozen:
            box.on("sbx1", "kill", "-CONT", frozen)
        runner.wait(timeout=120)
    assert runner.returncode == 0, cat(box, "sbx1", f"/var/log/pgmam/scheduled-{app}.log")
    assert len(labels(box, "sbx1", app)) == len(before) + 1
    assert last_result(box, "sbx1", app)[1:3] == ["0", "incr"]
    assert not exists(box, "sbx1", f"{LOCKS}/{app}")
    audit = cat(box, "sbx1", "/var/log/pgmam/audit.log")
    assert re.search(rf"op=backup app={app} who=schedule .*type=incr mode=scheduled result=ok", audit), audit


def test_scheduled_drill_proves_the_newest_backup_and_leaves_live_alone(box, inv):
    app, port = "bl_drill", 5637
    cron = f"/etc/cron.d/pgmam-{app}"
    make_app(box, inv, "sbx1", app, port, rows=500)
    out = inv("schedule", "--host", "sbx1", "--app", app, "--verify", "Sun 05:00")
    assert out.returncode == 0, out.stderr
    assert "restore drills Sun 05:00" in out.stderr
    entries = cron_entries(cat(box, "sbx1", cron))
    assert {kind: when for kind, (when, _) in entries.items()} == {
        "full": "0 3 * * 0",
        "diff": "0 3 * * 1,2,3,4,5,6",
        "verify": "0 5 * * 0",
    }
    _, cluster = status_of(inv, "sbx1", app)
    assert {"type": "verify", "calendar": "Sun 05:00"}.items() <= next(
        s for s in cluster["schedule"] if s["type"] == "verify"
    ).items()
    out = inv("backup", "--host", "sbx1", "--app", app)
    assert out.returncode == 0, out.stderr
    newest = labels(box, "sbx1", app)[-1]
    insert(box, "sbx1", port, 501, 600)  # after the newest backup: not in the drill
    live = (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T))

    run = box.on("sbx1", *CRON_ENV, entries["verify"][1], check=False)
    assert run.returncode == 0, job_dump(box, "sbx1", app) + cat(box, "sbx1", f"/var/log/pgmam/scheduled-{app}.log")
    assert last_result(box, "sbx1", app)[1:4] == ["0", "verify", newest]
    code, cluster = status_of(inv, "sbx1", app)
    proven = cluster["last_proven_restorable"]
    assert proven["ok"] is True and proven["backup"] == newest and proven["rows"] == 500, proven
    assert proven["amcheck"] == "ok"
    assert cluster["last_scheduled"]["type"] == "verify" and cluster["last_scheduled"]["ok"] is True
    assert code == 0 and not cluster["problems"], cluster["problems"]
    # the live cluster: same postmaster, same data; nothing left behind
    assert (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T)) == live
    assert drill_dirs(box, "sbx1", app) == []
    assert not exists(box, "sbx1", f"{LOCKS}/{app}")
    assert labels(box, "sbx1", app)[-1] == newest
    jobs = [j for j in ls(box, "sbx1", JOBS) if j.startswith(f"verify-{app}-")]
    assert len(jobs) == 1
    audit = cat(box, "sbx1", "/var/log/pgmam/audit.log")
    assert re.search(rf"op=verify app={app} who=schedule job={jobs[0]} .*mode=scheduled result=ok", audit), audit

    # no backup to drill (the stanza's backups moved away for a moment): a failed drill, nothing started
    repo, aside = f"/var/lib/pgbackrest/backup/{app}", f"/var/lib/pgbackrest/aside-{app}"
    box.on("sbx1", "mv", repo, aside)
    try:
        run = box.on("sbx1", *CRON_ENV, entries["verify"][1], check=False)
    finally:
        box.on("sbx1", "mv", aside, repo)
    assert run.returncode == 1, run.stdout + run.stderr
    assert last_result(box, "sbx1", app)[1:4] == ["1", "verify", "-"]
    assert "no backup to verify" in cat(box, "sbx1", f"/var/log/pgmam/scheduled-{app}.log")
    code, cluster = status_of(inv, "sbx1", app)
    assert code == 1 and cluster["last_proven_restorable"]["ok"] is False
    assert [j for j in ls(box, "sbx1", JOBS) if j.startswith(f"verify-{app}-")] == jobs  # no job was started
    assert (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T)) == live

    # --remove takes the drill's cron line and job away too
    out = inv("schedule", "--host", "sbx1", "--app", app, "--remove")
    assert out.returncode == 0, out.stderr
    assert not exists(box, "sbx1", cron) and not exists(box, "sbx1", f"/var/lib/pgmam/schedules/{app}")


# -- 4. verify: a restore drill ----------------------------------------------------------------


def test_verify_proves_a_good_backup_and_leaves_the_live_cluster_alone(box, inv):
    app, port = "bl_verify", 5641
    make_app(box, inv, "sbx1", app, port, rows=1000)
    out = inv("backup", "--host", "sbx1", "--app", app)
    assert out.returncode == 0, out.stderr
    newest = labels(box, "sbx1", app)[-1]
    insert(box, "sbx1", port, 1001, 1200)  # after the backup: not in the drill of "latest backup"
    live = (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T))
    archive = f"/var/lib/pgbackrest/archive/{app}"
    archived_before = box.on("sbx1", "find", archive, "-name", "*.history").stdout

    out = verify(box, inv, "sbx1", app)
    assert out.returncode == 0, out.stderr + job_dump(box, "sbx1", app)
    found = restores_line(out)
    assert found[1] == newest
    assert (found[2], found[3]) == ("1", "1000")  # the backup's content, not the live one
    assert found[4] == "ok"  # pg_amcheck ran and found nothing

    _, cluster = status_of(inv, "sbx1", app)
    proven = cluster["last_proven_restorable"]
    assert proven["ok"] is True and proven["backup"] == newest and proven["rows"] == 1000
    assert not cluster["problems"], cluster["problems"]
    # the live cluster: same postmaster, same data, still online; the drill left nothing behind
    assert (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T)) == live
    assert f"15 {app} {port} online" in box.clusters("sbx1")
    assert drill_dirs(box, "sbx1", app) == []
    assert not exists(box, "sbx1", f"{LOCKS}/{app}")
    # the promoted throwaway instance never wrote to the stanza (no new timeline's history there)
    assert box.on("sbx1", "find", archive, "-name", "*.history").stdout == archived_before
    assert labels(box, "sbx1", app)[-1] == newest

    # a point-in-time drill: exactly the rows committed before T
    box.psql("sbx1", port, "select pg_switch_wal()")
    target = server_now(box, "sbx1", port)
    time.sleep(1.1)  # T is in the past at the second granularity pgmam reads the server clock with
    insert(box, "sbx1", port, 1201, 1300)
    box.on("sbx1", "sh", "-c", f"cd /tmp && runuser -u postgres -- pgbackrest --stanza={app} check")
    live = (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T))
    out = verify(box, inv, "sbx1", app, "--to", target.isoformat())
    assert out.returncode == 0, out.stderr + job_dump(box, "sbx1", app)
    found = restores_line(out)
    assert found[1] == newest and found[3] == "1200"
    _, cluster = status_of(inv, "sbx1", app)
    assert cluster["last_proven_restorable"]["ok"] is True
    assert cluster["last_proven_restorable"]["rows"] == 1200
    assert (started_at(box, "sbx1", port), box.psql("sbx1", port, CHECKSUM_T)) == live
    assert drill_dirs(box, "sbx1", app) == []


@pytest.fixture(scope="module")
def damaged(box, inv):
    """An app whose newest (full) backup has a table file overwritten in the repository, then verified."""
    app, port = "bl_damaged", 5651
    make_app(box, inv, "sbx2", app, port, rows=20000)
    box.psql("sbx2", port, "checkpoint")
    out = inv("backup", "--host", "sbx2", "--app", app, "--type", "full")
    assert out.returncode == 0, out.stderr
    label = labels(box, "sbx2", app)[-1]
    assert label.endswith("F")
    relation = box.psql("sbx2", port, "select pg_relation_filepath('t')")
    found = box.on("sbx2", "sh", "-c", 'ls "$1"*', "sh", f"/var/lib/pgbackrest/backup/{app}/{label}/pg_data/{relation}")
    stored = found.stdout.split()[0]  # e.g. .../pg_data/base/5/16388.zst
    size = int(box.on("sbx2", "stat", "-c", "%s", stored).stdout)
    assert size > 4096, stored
    box.on(
        "sbx2",
        "sh",
        "-c",
        'printf "%0512d" 0 | dd of="$1" bs=1 seek="$2" conv=notrunc status=none',
        "sh",
        stored,
        str(size // 2),
    )
    live = (started_at(box, "sbx2", port), box.psql("sbx2", port, CHECKSUM_T))
    out = verify(box, inv, "sbx2", app)
    return {"app": app, "port": port, "label": label, "live": live, "out": out}


def test_verify_fails_loudly_on_a_damaged_repository(box, inv, damaged):
    app, port, out = damaged["app"], damaged["port"], damaged["out"]
    assert out.returncode == 1, out.stdout + out.stderr
    # pgBackRest's restore checks every file against the manifest: that is the loud failure
    assert "does not match expected checksum" in out.stderr, out.stderr
    assert f"restore backup {damaged['label']}" in out.stderr and "failed" in out.stderr
    assert "restores:" not in out.stderr
    # the live cluster: online, same postmaster, same data
    assert f"15 {app} {port} online" in box.clusters("sbx2")
    assert (started_at(box, "sbx2", port), box.psql("sbx2", port, CHECKSUM_T)) == damaged["live"]
    assert not exists(box, "sbx2", f"{LOCKS}/{app}")


def test_failed_drill_is_recorded_and_cleaned_up(box, inv, damaged):
    app = damaged["app"]
    code, cluster = status_of(inv, "sbx2", app)
    assert code == 1
    proven = cluster["last_proven_restorable"]
    assert proven is not None and proven["ok"] is False, cluster
    assert proven["backup"] == damaged["label"]
    assert any("restore drill" in p and "FAILED" in p for p in cluster["problems"]), cluster["problems"]
    assert drill_dirs(box, "sbx2", app) == []


def test_scheduled_drill_of_a_damaged_repository_turns_status_red(box, inv, damaged):
    app, port = damaged["app"], damaged["port"]
    out = inv("schedule", "--host", "sbx2", "--app", app, "--verify", "daily")
    assert out.returncode == 0, out.stderr
    command = cron_entries(cat(box, "sbx2", f"/etc/cron.d/pgmam-{app}"))["verify"][1]
    drills = cat(box, "sbx2", f"{VERIFIED}/{app}").splitlines()
    run = box.on("sbx2", *CRON_ENV, command, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert last_result(box, "sbx2", app)[1:4] == ["1", "verify", damaged["label"]]
    now = cat(box, "sbx2", f"{VERIFIED}/{app}").splitlines()
    assert now[: len(drills)] == drills and len(now) == len(drills) + 1
    assert now[-1].split()[1:3] == ["failed", damaged["label"]]
    assert "does not match expected checksum" in cat(box, "sbx2", f"/var/log/pgmam/scheduled-{app}.log")
    code, cluster = status_of(inv, "sbx2", app)
    assert code == 1 and cluster["healthy"] is False
    assert any("scheduled restore drill failed" in p for p in cluster["problems"]), cluster["problems"]
    assert f"15 {app} {port} online" in box.clusters("sbx2")
    assert (started_at(box, "sbx2", port), box.psql("sbx2", port, CHECKSUM_T)) == damaged["live"]
    assert drill_dirs(box, "sbx2", app) == []
    assert not exists(box, "sbx2", f"{LOCKS}/{app}")


# -- 5. the drill uses the config snapshot of the backup -------------------------------------


def test_verify_uses_the_backups_config_snapshot(box, inv):
    app, port = "bl_conf", 5661
    make_app(box, inv, "sbx1", app, port, rows=10)
    custom = f"/etc/postgresql/15/{app}/conf.d/custom.conf"
    write = 'printf "%s\\n" "$2" > "$1" && chown postgres:postgres "$1"'
    box.on("sbx1", "sh", "-c", write, "sh", custom, "work_mem = '7MB'")
    box.on("sbx1", "pg_ctlcluster", "15", app, "reload")
    assert box.psql("sbx1", port, "show work_mem") == "7MB"
    out = inv("backup", "--host", "sbx1", "--app", app)
    assert out.returncode == 0, out.stderr
    label = labels(box, "sbx1", app)[-1]
    snapshot = f"{SNAPSHOTS}/{app}/{label}.tar.gz"
    inside = box.on("sbx1", "tar", "-xzOf", snapshot, f"{app}/conf.d/custom.conf").stdout
    assert "work_mem = '7MB'" in inside

    # The live config now has a value PostgreSQL refuses (not reloaded: the live cluster runs on).
    # A drill that used it could not start; with the backup's snapshot it runs.
    box.on("sbx1", "sh", "-c", write, "sh", custom, "work_mem = 'not a size'")
    try:
        out = verify(box, inv, "sbx1", app)
    finally:
        box.on("sbx1", "sh", "-c", write, "sh", custom, "work_mem = '7MB'")
    assert out.returncode == 0, out.stderr + job_dump(box, "sbx1", app)
    assert restores_line(out)[1] == label
    jobs = [j for j in ls(box, "sbx1", JOBS) if j.startswith(f"verify-{app}-")]
    assert len(jobs) == 1
    journal = cat(box, "sbx1", f"{JOBS}/{jobs[0]}/journal")
    assert re.search(rf"^\S+ note config={re.escape(snapshot)}$", journal, re.M), journal
    assert f"15 {app} {port} online" in box.clusters("sbx1")
    assert box.psql("sbx1", port, "show work_mem") == "7MB"
    assert drill_dirs(box, "sbx1", app) == []


def test_the_watchdog_runs_from_cron_where_there_is_no_systemd(box, inv):
    app, port = "bl_watch", 5671
    make_app(box, inv, "sbx1", app, port)
    out = inv("watchdog", "--host", "sbx1")
    assert out.returncode == 0, out.stderr
    assert "run the watchdog every 5 min (cron)" in out.stderr and "checked " in out.stderr
    ((line,),) = [[x for x in cat(box, "sbx1", "/etc/cron.d/pgmam-watchdog").splitlines() if not x.startswith("#")]]
    assert line.startswith("*/5 * * * * root ")
    assert box.on("sbx1", "stat", "-c", "%U %a", "/etc/cron.d/pgmam-watchdog").stdout.split() == ["root", "644"]
    box.on("sbx1", "rm", "-f", "/var/lib/pgmam/watchdog/last.json")
    run = box.on("sbx1", *CRON_ENV, line.split(" root ", 1)[1], check=False)
    assert run.returncode == 0, run.stderr
    record = json.loads(cat(box, "sbx1", "/var/lib/pgmam/watchdog/last.json"))
    assert record["error"] is None and record["every_seconds"] == 300
    out = inv("watchdog", "--host", "sbx1", "--remove")
    assert out.returncode == 0, out.stderr
    assert not exists(box, "sbx1", "/etc/cron.d/pgmam-watchdog") and not exists(box, "sbx1", "/var/lib/pgmam/watchdog")
