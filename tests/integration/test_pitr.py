"""pitr, rollback and restore-point over real SSH against sandbox servers.

What matters: after `inv pitr --to T` the app holds exactly the data it had at
T (taken from the server's clock), on a new timeline, with the data it had
before kept aside; refusals change nothing; failures before the swap leave the
app untouched and failures after it roll back by themselves; the job survives
the client; other apps on the server never notice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO

PG = "/var/lib/postgresql/15"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
LOCKS = "/var/lib/pgmam/locks"
JOBS = "/var/lib/pgmam/jobs"
NOW_UTC = "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
TIMELINE = "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
CHECKSUM_T = "select count(*) || ':' || coalesce(md5(string_agg(id || '=' || v, ',' order by id)), '-') from t"
CHECKSUM_PGBENCH = """select
  md5((select string_agg(a::text, ',' order by aid) from pgbench_accounts a)) || ':' ||
  md5((select string_agg(b::text, ',' order by bid) from pgbench_branches b)) || ':' ||
  md5((select string_agg(t::text, ',' order by tid) from pgbench_tellers t)) || ':' ||
  (select count(*) || ':' || coalesce(sum(delta), 0) from pgbench_history)"""


# -- helpers: the test's own eyes, never through pgmam -------------------------------------


def make_app(box, inv, server: str, app: str, port: int, table: bool = True) -> None:
    """An app made by pgmam (idempotent), optionally with an empty table t(id, v)."""
    out = inv("initcluster", "--host", server, "--app", app, "--port", str(port))
    assert out.returncode == 0, out.stderr
    if table:
        box.psql(server, port, "create table if not exists t (id int primary key, v text)")


def write(box, server: str, port: int, sql: str) -> None:
    box.psql(server, port, sql)


def insert(box, server: str, port: int, first: int, last: int) -> None:
    box.psql(server, port, f"insert into t select g, md5(random()::text) from generate_series({first}, {last}) g")


def checksum(box, server: str, port: int) -> str:
    return box.psql(server, port, CHECKSUM_T)


def server_now(box, server: str, port: int) -> str:
    """The server's clock, with an explicit zone (never the laptop's)."""
    return box.psql(server, port, NOW_UTC)


def mark(box, server: str, port: int, sql: str = CHECKSUM_T) -> tuple[str, str]:
    """(checksum, T) with no write in between, then a pause so that later commits are clearly after T."""
    value = box.psql(server, port, sql)
    moment = server_now(box, server, port)
    time.sleep(0.3)
    return value, moment


def timeline(box, server: str, port: int) -> int:
    return int(box.psql(server, port, TIMELINE))


def started_at(box, server: str, port: int) -> str:
    return box.psql(server, port, "select pg_postmaster_start_time()")


def dirs(box, server: str) -> list[str]:
    return sorted(box.on(server, "ls", "-1", PG).stdout.split())


def jobs(box, server: str) -> list[str]:
    return sorted(box.on(server, "sh", "-c", f"ls -1 {JOBS} 2>/dev/null || true").stdout.split())


def of_kind(names: list[str], kind: str, app: str) -> list[str]:
    return [n for n in names if re.fullmatch(rf"{kind}-{app}-\d{{8}}T\d{{6}}Z", n)]


def online(box, server: str, app: str, port: int) -> bool:
    return f"15 {app} {port} online" in box.clusters(server)


def locked(box, server: str, app: str) -> bool:
    return box.on(server, "test", "-e", f"{LOCKS}/{app}", check=False).returncode == 0


def wait_unlocked(box, server: str, app: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while locked(box, server, app):
        if time.monotonic() > deadline:
            raise AssertionError(f"{app} still locked after {timeout:.0f} s")
        time.sleep(0.5)


def pgbench(box, server: str, port: int, *args: str) -> None:
    argv = ["runuser", "-u", "postgres", "--", PGBENCH, "-p", str(port), *args, "postgres"]
    box.on(server, "sh", "-c", 'cd /tmp && exec "$@"', "sh", *argv)


def pitr(inv, server: str, app: str, *args: str, yes: bool = True) -> subprocess.CompletedProcess[str]:
    return inv("pitr", "--host", server, "--app", app, *args, *(["--yes"] if yes else []))


def status_cluster(inv, server: str, app: str) -> dict:
    out = inv("status", "--host", server, "--json")
    doc = json.loads(out.stdout)
    return next(c for c in doc["hosts"][0]["clusters"] if c["app"] == app)


def popen_inv(box, *args: str) -> subprocess.Popen[str]:
    """The real CLI in the background, stdin closed, stderr piped (line by line)."""
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env={**os.environ, "PGMAM_HOSTS": str(box.inventory), "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], needle: str) -> list[str]:
    """stderr lines of proc up to and including the first one containing needle (or EOF)."""
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            break
    return seen


def server_side(box, argv: list[str]) -> str:
    """The end of the newest job journal for the app a failed command was about (what really happened)."""
    server = argv[argv.index("--host") + 1]
    app = argv[argv.index("--into" if "--into" in argv else "--app") + 1]
    script = f'd=$(ls -1dt {JOBS}/*-{app}-2* | head -n 1); [ -n "$d" ] && echo "$d" && tail -n 4 "$d/journal"'
    return box.on(server, "sh", "-c", script, check=False).stdout


def assert_ok(box, out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, f"{out.stdout}{out.stderr}\n-- server side:\n{server_side(box, list(out.args))}"


# -- 1. a real workload ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bystander(box, inv):
    """Another app on sbx1 with a little data: pitr of its neighbours and refusals must not touch it."""
    s, app, port = "sbx1", "pt_bystander", 5612
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 50)
    return s, app, port


def test_pitr_of_a_pgbench_workload_restores_exactly_the_state_at_t(box, inv, bystander):
    s, app, port = "sbx1", "pt_bench", 5611
    make_app(box, inv, s, app, port, table=False)
    _, _, other_port = bystander
    other = (started_at(box, s, other_port), checksum(box, s, other_port))

    pgbench(box, s, port, "-i", "-q", "-s", "2")
    pgbench(box, s, port, "-T", "3", "-c", "2", "-n")
    at_t, target = mark(box, s, port, CHECKSUM_PGBENCH)
    time.sleep(0.9)
    pgbench(box, s, port, "-T", "3", "-c", "2", "-n")
    assert box.psql(s, port, CHECKSUM_PGBENCH) != at_t
    before_tl, before_dirs = timeline(box, s, port), dirs(box, s)

    out = pitr(inv, s, app, "--to", target)
    assert_ok(box, out)
    assert f"{app} on {s} restored to" in out.stderr
    assert box.psql(s, port, CHECKSUM_PGBENCH) == at_t
    after_tl = timeline(box, s, port)
    assert after_tl > before_tl
    new = sorted(set(dirs(box, s)) - set(before_dirs))
    assert len(of_kind(new, "old", app)) == 1 and new == of_kind(new, "old", app), new
    # it returned once the app was back; its backup on the new timeline ends the job
    assert "then        prove archiving and take a backup on the new timeline" in out.stderr
    wait_unlocked(box, s, app)
    last = status_cluster(inv, s, app)["last_job"]
    assert (last["op"], last["result"]) == ("pitr", "ok"), last
    # the other app on the server never noticed
    assert (started_at(box, s, other_port), checksum(box, s, other_port)) == other

    cluster = status_cluster(inv, s, app)
    assert cluster["status"] == "online" and cluster["in_recovery"] is False
    assert cluster["timeline"] == after_tl
    assert cluster["archiving"]["ok"] is True, cluster
    assert cluster["last_full"] is not None and cluster["last_full"]["type"] == "full"
    assert cluster["problems"] == [], cluster["problems"]


# -- 2. repeated restores and a rollback ------------------------------------------------------


def test_repeated_restores_back_and_forth_and_rollback(box, inv):
    s, app, port = "sbx1", "pt_repeat", 5613
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 100)
    c1, t1 = mark(box, s, port)
    write(box, s, port, "update t set v = 'two' where id <= 30; delete from t where id > 90")
    c2, t2 = mark(box, s, port)
    write(box, s, port, "delete from t where id between 40 and 60")
    insert(box, s, port, 200, 220)
    assert len({c1, c2, checksum(box, s, port)}) == 3

    out = pitr(inv, s, app, "--to", t2)
    assert_ok(box, out)
    assert checksum(box, s, port) == c2
    tl2 = timeline(box, s, port)
    assert tl2 > 1

    insert(box, s, port, 300, 310)
    c3, t3 = mark(box, s, port)
    write(box, s, port, "update t set v = 'four'")
    assert c3 not in (c1, c2, checksum(box, s, port))

    before_last = checksum(box, s, port)
    out = pitr(inv, s, app, "--to", t1)  # earlier than the previous target: back into the first timeline's past
    assert_ok(box, out)
    assert checksum(box, s, port) == c1
    tl3 = timeline(box, s, port)
    assert tl3 > tl2

    insert(box, s, port, 400, 405)  # written after the restore: preserved by the rollback, not lost
    olds = of_kind(dirs(box, s), "old", app)
    out = inv("rollback", "--host", s, "--app", app, "--yes")
    assert_ok(box, out)
    assert f"{app} on {s} rolled back to {olds[-1]}" in out.stderr
    assert checksum(box, s, port) == before_last
    tl_back = timeline(box, s, port)
    assert tl_back > tl3  # the preserved data goes on under a new timeline
    olds_after = of_kind(dirs(box, s), "old", app)
    assert olds[-1] not in olds_after and len(olds_after) == len(olds)  # one swapped in, one preserved

    out = pitr(inv, s, app, "--to", t3)  # a time on the second timeline, reached through the rollback's
    assert_ok(box, out)
    assert checksum(box, s, port) == c3
    assert timeline(box, s, port) > tl_back
    assert not of_kind(dirs(box, s), "staging", app) and not of_kind(dirs(box, s), "failed", app)


# -- 3. refusals change nothing -----------------------------------------------------------------


def snapshot(box, server: str, app: str, port: int) -> tuple:
    return (
        online(box, server, app, port),
        timeline(box, server, port),
        started_at(box, server, port),
        checksum(box, server, port),
        dirs(box, server),
        jobs(box, server),
    )


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("before-backup", 1, "before the earliest restorable point"),
        ("unknown-app", 1, "no cluster named pt_nosuch"),
        ("no-yes", 1, "confirmation needed"),
    ],
)
def test_refusals_change_nothing(box, inv, bystander, case, code, message):
    s, app, port = bystander
    now = server_now(box, s, port)
    # the rest of the refusals: in-process on a recorded server (tests/unit/test_refusals.py)
    args = ["--to", "2001-01-01 00:00:00+00"] if case == "before-backup" else ["--to", now]
    before = snapshot(box, s, app, port)
    out = pitr(inv, s, "pt_nosuch" if case == "unknown-app" else app, *args, yes=case != "no-yes")
    assert out.returncode == code, out.stdout + out.stderr
    assert message in out.stderr
    assert snapshot(box, s, app, port) == before


def test_refused_while_another_job_holds_the_lock(box, inv, bystander):
    s, app, port = bystander
    with box.fake_job(s, app) as holder:
        before = snapshot(box, s, app, port)
        out = pitr(inv, s, app, "--to", server_now(box, s, port))
        assert out.returncode == 1, out.stdout + out.stderr
        assert "busy" in out.stderr and "job fake" in out.stderr
        assert snapshot(box, s, app, port) == before
        assert box.on(s, "cat", f"{LOCKS}/{app}/pid").stdout.strip() == str(holder)  # the holder's lock is untouched


# -- 4. failures before and after the swap -----------------------------------------------------


def archived_segments(box, server: str, app: str) -> list[str]:
    out = box.on(server, "sh", "-c", f"ls -1 /var/lib/pgbackrest/archive/{app}/15-1/0000000100000000/").stdout
    return sorted(out.split())


def segments_between_backup_and_target(box, inv, s: str, app: str, port: int) -> tuple[str, str, list[str]]:
    """An app with five archived segments after its backup: (checksum at T, T, those segments)."""
    make_app(box, inv, s, app, port)
    backup_stop = box.backup_info(s, app)["backup"][-1]["archive"]["stop"]
    for i in range(5):
        insert(box, s, port, i * 10, i * 10 + 9)
        box.psql(s, port, "select pg_switch_wal()")
    at_t, target = mark(box, s, port)
    last = box.psql(s, port, "select pg_walfile_name(pg_current_wal_lsn())")
    insert(box, s, port, 100, 120)
    box.psql(s, port, "select pg_switch_wal()")
    deadline = time.monotonic() + 30
    while not any(n.startswith(last) for n in archived_segments(box, s, app)):
        assert time.monotonic() < deadline, "WAL not archived in time"
        time.sleep(0.3)
    between = [n for n in archived_segments(box, s, app) if backup_stop < n[:24] < last]
    assert len(between) >= 3, between
    return at_t, target, between


def test_unreadable_wal_fails_before_the_swap_and_leaves_the_app_untouched(box, inv):
    s, app, port = "sbx1", "pt_walgap", 5615
    at_t, target, between = segments_between_backup_and_target(box, inv, s, app, port)
    victim = between[len(between) // 2]
    # still there (no hole the preflight could see), but unreadable: only the replay finds out
    box.on(
        s,
        "sh",
        "-c",
        'head -c 4096 /dev/urandom > "$1"',
        "-",
        f"/var/lib/pgbackrest/archive/{app}/15-1/0000000100000000/{victim}",
    )
    pre = checksum(box, s, port)
    assert pre != at_t
    before = (timeline(box, s, port), started_at(box, s, port), dirs(box, s))

    out = pitr(inv, s, app, "--to", target)
    assert out.returncode == 1, out.stdout + out.stderr
    # it is the replay that fails (the restored copy cannot reach T), and the app was never touched
    step = r"step \d+ \((start a temporary|replay WAL).*\) failed"
    assert re.search(rf"{step}(; everything was rolled back| before anything was changed)", out.stderr), out.stderr
    assert online(box, s, app, port)
    assert checksum(box, s, port) == pre
    assert (timeline(box, s, port), started_at(box, s, port), dirs(box, s)) == before
    assert not locked(box, s, app)


def test_a_hole_in_the_archived_wal_is_shown_and_a_target_past_it_refused_before_anything(box, inv):
    s, app, port = "sbx1", "pt_hole", 5622
    _, target, between = segments_between_backup_and_target(box, inv, s, app, port)
    for victim in between[1:3]:  # what pgBackRest does when its archive queue overflows: they are never pushed
        box.on(s, "rm", f"/var/lib/pgbackrest/archive/{app}/15-1/0000000100000000/{victim}")
    cluster = status_cluster(inv, s, app)
    (hole,) = cluster["recovery_window"]["breaks"]
    assert hole["missing_segments"] == 2 and hole["last_before"] == between[0][:24] and hole["to"] is None
    assert any(p.startswith("2 WAL segments missing from the repository after") for p in cluster["problems"])
    listed = inv("backups", "--host", s, "--app", app)
    assert "hole: 2 WAL segments missing from the repository after" in listed.stdout, listed.stdout
    before = (checksum(box, s, port), timeline(box, s, port), started_at(box, s, port), dirs(box, s))

    out = pitr(inv, s, app, "--to", target)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "is past a hole in pt_hole's archived WAL: 2 segments after" in out.stderr, out.stderr
    assert (checksum(box, s, port), timeline(box, s, port), started_at(box, s, port), dirs(box, s)) == before
    assert not locked(box, s, app)

    # a full backup after the hole: status is healthy again, and targets after that backup restore
    assert inv("backup", "--host", s, "--app", app, "--type", "full").returncode == 0
    cluster = status_cluster(inv, s, app)
    assert cluster["recovery_window"]["breaks"][0]["to"] is not None and cluster["problems"] == []
    insert(box, s, port, 200, 209)
    at_later, later = mark(box, s, port)
    insert(box, s, port, 300, 309)
    out = pitr(inv, s, app, "--to", later)
    assert out.returncode == 0, out.stdout + out.stderr
    assert checksum(box, s, port) == at_later


def test_pitr_returns_once_the_app_is_back_and_a_failed_follow_up_backup_turns_status_red(box, inv):
    """The command returns when the restored app accepts writes; its backup runs on in the job.
    That backup failing never undoes the restore (the app has been taking writes): status says it."""
    s, app, port = "sbx1", "pt_postswap", 5616
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 40)
    at_t, target = mark(box, s, port)
    write(box, s, port, "delete from t where id % 2 = 0")
    pre_tl = timeline(box, s, port)
    backups = f"/var/lib/pgbackrest/backup/{app}"
    mode = box.on(s, "stat", "-c", "%a", backups).stdout.strip()
    box.on(s, "chmod", "0500", backups)  # `pgbackrest check` still passes, the backup itself cannot write
    try:
        out = pitr(inv, s, app, "--to", target)
        assert out.returncode == 0, out.stdout + out.stderr
        assert re.search(
            r"then +prove archiving and take a backup on the new timeline: running on the server", out.stderr
        )
        assert "new backup" not in out.stderr
        wait_unlocked(box, s, app)
    finally:
        box.on(s, "chmod", mode, backups)
    assert online(box, s, app, port)
    assert checksum(box, s, port) == at_t  # the restore stays
    assert timeline(box, s, port) > pre_tl
    cluster = status_cluster(inv, s, app)
    assert cluster["last_job"]["result"] == "incomplete"
    assert any("runs on its new data, but step" in p and "backup" in p for p in cluster["problems"]), cluster
    names = dirs(box, s)
    assert len(of_kind(names, "old", app)) == 1 and not of_kind(names, "failed", app), names

    write(box, s, port, "insert into t values (1000, 'after the restore')")
    assert inv("backup", "--host", s, "--app", app).returncode == 0
    assert status_cluster(inv, s, app)["problems"] == []


def test_the_next_command_waits_for_a_pitr_still_taking_its_backup(box, inv):
    s, app, port = "sbx1", "pt_follow", 5623
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 40)
    at_t, target = mark(box, s, port)
    insert(box, s, port, 41, 80)
    out = pitr(inv, s, app, "--to", target)
    assert out.returncode == 0, out.stdout + out.stderr
    rolled = inv("rollback", "--host", s, "--app", app, "--yes")  # the pitr's backup may still run: waits for it
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert checksum(box, s, port) != at_t
    wait_unlocked(box, s, app)
    results = {c["op"]: c["result"] for c in [status_cluster(inv, s, app)["last_job"]]}
    assert results == {"rollback": "ok"}
    records = box.on(s, "sh", "-c", f"grep 'app={app} ' /var/log/pgmam/audit.log").stdout
    assert "op=pitr" in records and "result=ok" in records.split("op=rollback")[0]  # the pitr's job ended ok


def test_killed_client_leaves_the_job_running_and_rerun_reattaches(box, inv):
    s, app, port = "sbx1", "pt_detach", 5617
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 1000)
    at_t, target = mark(box, s, port)
    write(box, s, port, "truncate t")
    before_tl = timeline(box, s, port)
    args = ("pitr", "--host", s, "--app", app, "--to", target, "--yes")

    proc = popen_inv(box, *args)
    seen = read_until(proc, "replay WAL")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert "replay WAL" in seen[-1], "".join(seen)

    wait_unlocked(box, s, app)
    assert online(box, s, app, port)
    assert checksum(box, s, port) == at_t
    assert timeline(box, s, port) > before_tl
    olds = of_kind(dirs(box, s), "old", app)
    assert len(olds) == 1, olds
    backups = box.backup_info(s, app)["backup"]

    again = inv(*args)
    assert_ok(box, again)
    assert "re-attaching" in again.stderr
    assert f"{app} on {s} restored to" in again.stderr
    assert of_kind(dirs(box, s), "old", app) == olds  # no second restore
    assert box.backup_info(s, app)["backup"] == backups
    assert checksum(box, s, port) == at_t


# -- 6. one restore per app at a time ---------------------------------------------------------


def test_concurrent_pitr_is_refused_and_the_same_command_reattaches(box, inv):
    s, app, port = "sbx2", "pt_busy", 5618
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 200000)  # some WAL to replay: the job runs a few seconds
    c1, t1 = mark(box, s, port)
    insert(box, s, port, 200001, 200100)
    _, t2 = mark(box, s, port)
    write(box, s, port, "truncate t")
    args = ("pitr", "--host", s, "--app", app, "--to", t1, "--yes")

    first = popen_inv(box, *args)
    try:
        seen = read_until(first, "restore backup")
        assert "restore backup" in seen[-1], "".join(seen)
        other = pitr(inv, s, app, "--to", t2)
        running = status_cluster(inv, s, app)["job"]
        same = inv(*args)
        _, rest = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        wait_unlocked(box, s, app)
    assert first.returncode == 0, "".join(seen) + rest
    assert other.returncode == 1, other.stdout + other.stderr
    assert "busy" in other.stderr
    assert running is not None and running["alive"] is True and running["op"] == "pitr", running
    assert_ok(box, same)  # the same request follows the running job instead of starting another
    assert "re-attaching" in same.stderr
    assert checksum(box, s, port) == c1
    assert len(of_kind(dirs(box, s), "old", app)) == 1


# -- 7. --into a new app -----------------------------------------------------------------------


def test_pitr_into_a_new_app_leaves_the_source_alone(box, inv):
    s, app, port, new, new_port = "sbx2", "pt_src", 5619, "pt_copy", 5620
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 300)
    at_t, target = mark(box, s, port)
    write(box, s, port, "delete from t where id > 100")
    source = (started_at(box, s, port), checksum(box, s, port), timeline(box, s, port))
    source_backups = box.backup_info(s, app)["backup"]
    source_archive = f"/var/lib/pgbackrest/archive/{app}/15-1"

    out = pitr(inv, s, app, "--to", target, "--into", new, "--port", str(new_port))
    assert_ok(box, out)
    assert f"{new} on {s} restored to" in out.stderr
    assert (started_at(box, s, port), checksum(box, s, port), timeline(box, s, port)) == source
    assert box.backup_info(s, app)["backup"] == source_backups
    # the copy never archived into the source's stanza (no new timeline there)
    assert not [n for n in box.on(s, "ls", "-1", source_archive).stdout.split() if n.endswith(".history")]

    assert online(box, s, new, new_port)
    assert checksum(box, s, new_port) == at_t
    assert box.psql(s, new_port, "select pg_is_in_recovery()") == "f"
    info = box.backup_info(s, new)
    assert info["status"]["code"] == 0, info["status"]
    assert [b["type"] for b in info["backup"]] == ["full"]
    assert f"--stanza={new}" in box.psql(s, new_port, "show archive_command")
    assert not locked(box, s, new)


# -- 8. named restore points -------------------------------------------------------------------


@pytest.fixture(scope="module")
def point_restored(box, inv):
    """An app restored to a named restore point after a destructive 'migration' (shared by 8, 9 and the repeat)."""
    s, app, port = "sbx2", "pt_point", 5621
    make_app(box, inv, s, app, port)
    insert(box, s, port, 1, 500)
    at_point = checksum(box, s, port)
    made = inv("restore-point", "--host", s, "--app", app, "--name", "before-migration")
    write(box, s, port, "alter table t add column w int; update t set w = id; delete from t where id < 250")
    write(box, s, port, "create table migrated as select * from t")
    before_tl = timeline(box, s, port)
    out = pitr(inv, s, app, "--to-point", "before-migration")
    wait_unlocked(box, s, app)  # it returned once the app was back; its job's backup ends it
    return {
        "server": s,
        "app": app,
        "port": port,
        "at_point": at_point,
        "made": made,
        "before_tl": before_tl,
        "out": out,
    }


def test_pitr_to_a_named_restore_point(box, point_restored):
    r = point_restored
    s, app, port = r["server"], r["app"], r["port"]
    assert_ok(box, r["made"])
    assert "restore point before-migration created" in r["made"].stderr
    assert_ok(box, r["out"])
    assert f"{app} on {s} restored to restore point before-migration" in r["out"].stderr
    assert checksum(box, s, port) == r["at_point"]
    assert box.psql(s, port, "select to_regclass('migrated') is null") == "t"
    assert timeline(box, s, port) > r["before_tl"]


# -- 9. status shows what pitr kept --------------------------------------------------------------


def test_status_lists_preserved_dirs(box, inv, point_restored):
    s, app = point_restored["server"], point_restored["app"]
    assert_ok(box, point_restored["out"])
    olds = of_kind(dirs(box, s), "old", app)
    assert len(olds) == 1, olds
    out = inv("status", "--host", s, "--json")
    clusters = {c["app"]: c for c in json.loads(out.stdout)["hosts"][0]["clusters"]}
    if "preserved" not in clusters[app]:
        pytest.skip("inv status --json has no `preserved` field per cluster yet (being added)")
    assert olds[0] in json.dumps(clusters[app]["preserved"]), clusters[app]["preserved"]
    for name, cluster in clusters.items():
        if name != app:
            assert olds[0] not in json.dumps(cluster.get("preserved")), name
    # nothing runs now; the last job is the pitr, and it went fine
    assert clusters[app]["job"] is None, clusters[app]["job"]
    assert clusters[app]["last_job"]["op"] == "pitr" and clusters[app]["last_job"]["result"] == "ok"


# -- the same restore again, on purpose ----------------------------------------------------------


def test_repeating_a_finished_pitr_on_purpose_restores_again(box, inv, point_restored):
    """The same mistake twice within minutes: the second identical `inv pitr` must restore again."""
    r = point_restored
    s, app, port = r["server"], r["app"], r["port"]
    assert_ok(box, r["out"])
    assert checksum(box, s, port) == r["at_point"]
    write(box, s, port, "delete from t where id < 400")  # the same kind of accident, after the restore
    out = pitr(inv, s, app, "--to-point", "before-migration")
    assert_ok(box, out)
    assert "re-attaching" not in out.stderr  # its earlier client saw that result: this is a new restore
    assert checksum(box, s, port) == r["at_point"]
    assert len(of_kind(dirs(box, s), "old", app)) == 2
