"""branch and dropcluster over real SSH: a branch is a full, independent copy; a drop keeps backups.

What matters: a branch holds the parent's data as of the target and its config snapshot, archives
into its own stanza, and the parent never notices; dropcluster refuses to orphan branches, takes
a final backup and keeps the stanza so `pitr --into` brings a dropped app back; --purge-backups
removes the stanza too and needs a confirmation.
"""

from __future__ import annotations

import time

import pytest

PARENT, PARENT_PORT = "bdp", 5811
DEV_PORT, OLD_PORT, BACK_PORT = 5812, 5813, 5814
PURGE_APP, PURGE_PORT = "bdpurge", 5821
NOW_UTC = "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
TIMELINE = "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
CHECKSUM = "select count(*) || ':' || coalesce(md5(string_agg(id || '=' || v, ',' order by id)), '-') from t"


def insert(box, port: int, first: int, last: int) -> None:
    box.psql("sbx1", port, f"insert into t select g, md5(g::text) from generate_series({first}, {last}) g")


def count(box, port: int) -> int:
    return int(box.psql("sbx1", port, "select count(*) from t"))


def parent_state(box) -> tuple[str, str, str]:
    p = PARENT_PORT
    return (
        box.psql("sbx1", p, "select pg_postmaster_start_time()"),
        box.psql("sbx1", p, TIMELINE),
        box.psql("sbx1", p, CHECKSUM),
    )


@pytest.fixture(scope="module")
def parent(box, inv):
    """A parent app with rows 1..100, a custom.conf (work_mem 7MB) in its backup's snapshot, then rows 101..200."""
    out = inv("initcluster", "--host", "sbx1", "--app", PARENT, "--port", str(PARENT_PORT))
    assert out.returncode == 0, out.stderr
    box.psql("sbx1", PARENT_PORT, "create table t (id int primary key, v text)")
    insert(box, PARENT_PORT, 1, 100)
    conf = f"/etc/postgresql/15/{PARENT}/conf.d/custom.conf"
    box.on("sbx1", "sh", "-c", f"echo \"work_mem = '7MB'\" > {conf} && chown postgres:postgres {conf}")
    box.on("sbx1", "pg_ctlcluster", "15", PARENT, "reload")
    assert box.psql("sbx1", PARENT_PORT, "show work_mem") == "7MB"
    out = inv("backup", "--host", "sbx1", "--app", PARENT)
    assert out.returncode == 0, out.stderr
    insert(box, PARENT_PORT, 101, 200)
    return PARENT


def test_branch_is_an_independent_copy_with_the_config_snapshot(box, inv, parent):
    before = parent_state(box)
    out = inv("branch", "--host", "sbx1", "--app", parent, "--name", "dev", "--port", str(DEV_PORT), "--yes")
    assert out.returncode == 0, out.stderr
    dev = f"{parent}_dev"
    assert f"15 {dev} {DEV_PORT} online" in box.clusters("sbx1")
    assert box.psql("sbx1", DEV_PORT, CHECKSUM) == before[2]  # all 200 rows, as of now
    assert count(box, DEV_PORT) == 200
    assert box.psql("sbx1", DEV_PORT, "show work_mem") == "7MB"
    assert f"--stanza={dev}" in box.psql("sbx1", DEV_PORT, "show archive_command")
    info = box.backup_info("sbx1", dev)
    assert info["status"]["code"] == 0, info["status"]
    assert [b["type"] for b in info["backup"]] == ["full"]
    assert parent_state(box) == before  # never restarted, same timeline, same rows
    box.psql("sbx1", DEV_PORT, "insert into t values (10000, 'branch only')")
    assert count(box, DEV_PORT) == 201
    assert box.psql("sbx1", PARENT_PORT, "select count(*) from t where id = 10000") == "0"


def test_branch_at_a_time_has_the_data_as_of_then(box, inv, parent):
    insert(box, PARENT_PORT, 201, 250)
    at = box.psql("sbx1", PARENT_PORT, NOW_UTC)
    expected = box.psql("sbx1", PARENT_PORT, CHECKSUM)
    time.sleep(0.05)  # so the later commits are strictly after the target
    insert(box, PARENT_PORT, 251, 300)
    box.psql("sbx1", PARENT_PORT, "select pg_switch_wal()")
    out = inv(
        "branch", "--host", "sbx1", "--app", parent, "--name", "old", "--at", at, "--port", str(OLD_PORT), "--yes"
    )
    assert out.returncode == 0, out.stderr
    assert f"15 {parent}_old {OLD_PORT} online" in box.clusters("sbx1")
    assert box.psql("sbx1", OLD_PORT, CHECKSUM) == expected
    assert box.psql("sbx1", OLD_PORT, "select count(*) from t where id > 250") == "0"
    assert count(box, OLD_PORT) == 250


def test_sync_replaces_a_branch_with_the_parent_and_preserves_its_old_data(box, inv, parent):
    dev = f"{parent}_dev"
    if not any(f" {dev} " in f" {c} " for c in box.clusters("sbx1")):
        out = inv("branch", "--host", "sbx1", "--app", parent, "--name", "dev", "--port", str(DEV_PORT), "--yes")
        assert out.returncode == 0, out.stderr
    box.psql("sbx1", DEV_PORT, "insert into t values (20000, 'branch only, before the sync')")
    insert(box, PARENT_PORT, 301, 320)
    expected = box.psql("sbx1", PARENT_PORT, CHECKSUM)
    before = parent_state(box)
    kept_before = box.on(
        "sbx1", "sh", "-c", f"ls -d /var/lib/postgresql/15/old-{dev}-* 2>/dev/null || true"
    ).stdout.split()
    out = inv("branch", "--host", "sbx1", "--app", parent, "--name", "dev", "--sync", "--yes")
    assert out.returncode == 0, out.stderr
    # it returned once the branch accepted writes on its new data; the job's backup goes on
    assert "then prove archiving and take a backup on the new timeline: running on the server" in out.stderr
    assert box.psql("sbx1", DEV_PORT, CHECKSUM) == expected  # the parent's current data
    assert box.psql("sbx1", DEV_PORT, "select count(*) from t where id = 20000") == "0"
    kept = box.on("sbx1", "sh", "-c", f"ls -d /var/lib/postgresql/15/old-{dev}-* 2>/dev/null || true").stdout.split()
    assert len(kept) == len(kept_before) + 1  # the branch's old data is preserved, not deleted
    assert box.psql("sbx1", DEV_PORT, "show work_mem") == "7MB"  # the branch keeps its own config
    deadline = time.monotonic() + 120
    while box.on("sbx1", "test", "-e", f"/var/lib/pgmam/locks/{dev}", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the sync's job never ended"
        time.sleep(0.5)
    info = box.backup_info("sbx1", dev)
    assert info["status"]["code"] == 0 and [b["type"] for b in info["backup"]] == ["full"]  # stanza started over
    assert parent_state(box) == before  # the parent was not restarted or changed


def test_drop_refused_while_a_branch_is_not_named(box, inv, parent):
    if not any(f" {parent}_dev " in f" {c} " for c in box.clusters("sbx1")):
        out = inv("branch", "--host", "sbx1", "--app", parent, "--name", "dev", "--port", str(DEV_PORT), "--yes")
        assert out.returncode == 0, out.stderr
    before = box.clusters("sbx1")
    out = inv("dropcluster", "--host", "sbx1", "--app", parent, "--yes")
    assert out.returncode == 1, out.stderr
    assert f"{parent}_dev" in out.stderr
    assert box.clusters("sbx1") == before
    assert box.psql("sbx1", PARENT_PORT, "select 1") == "1"


def test_drop_with_branches_keeps_backups_and_pitr_into_brings_it_back(box, inv, parent):
    apps = [
        c.split()[1] for c in box.clusters("sbx1") if c.split()[1] == parent or c.split()[1].startswith(f"{parent}_")
    ]
    assert f"{parent}_dev" in apps or f"{parent}_old" in apps  # a real branch is dropped along
    backups_before = len(box.backup_info("sbx1", parent)["backup"])
    rows_at_drop = box.psql("sbx1", PARENT_PORT, CHECKSUM)
    args = [arg for app in apps for arg in ("--app", app)]
    out = inv("dropcluster", "--host", "sbx1", *args, "--yes")
    assert out.returncode == 0, out.stderr
    left = [c.split()[1] for c in box.clusters("sbx1")]
    assert not set(apps) & set(left)
    info = box.backup_info("sbx1", parent)
    assert info["status"]["code"] == 0, info["status"]
    assert len(info["backup"]) == backups_before + 1  # the final backup

    now = box.on("sbx1", "date", "-u", "+%Y-%m-%d %H:%M:%S.%6N+00").stdout.strip()
    back = f"{parent}_back"
    out = inv("pitr", "--host", "sbx1", "--app", parent, "--to", now, "--into", back, "--port", str(BACK_PORT), "--yes")
    assert out.returncode == 0, out.stderr
    assert f"15 {back} {BACK_PORT} online" in box.clusters("sbx1")
    assert box.psql("sbx1", BACK_PORT, CHECKSUM) == rows_at_drop


def test_purge_backups_needs_confirmation_then_removes_the_stanza(box, inv):
    out = inv("initcluster", "--host", "sbx1", "--app", PURGE_APP, "--port", str(PURGE_PORT))
    assert out.returncode == 0, out.stderr
    before = (box.clusters("sbx1"), box.config_files("sbx1"), box.backup_info("sbx1", PURGE_APP)["backup"])
    refused = inv("dropcluster", "--host", "sbx1", "--app", PURGE_APP, "--purge-backups")
    assert refused.returncode == 1, refused.stderr
    assert "--yes" in refused.stderr
    assert (box.clusters("sbx1"), box.config_files("sbx1"), box.backup_info("sbx1", PURGE_APP)["backup"]) == before

    out = inv("dropcluster", "--host", "sbx1", "--app", PURGE_APP, "--purge-backups", "--yes")
    assert out.returncode == 0, out.stderr
    assert not any(f" {PURGE_APP} " in f" {c} " for c in box.clusters("sbx1"))
    assert box.backup_info("sbx1", PURGE_APP)["status"]["code"] == 1  # missing stanza path
    assert f"{PURGE_APP}.conf" not in box.config_files("sbx1")
    assert box.on("sbx1", "test", "-e", f"/var/lib/pgbackrest/pgmam-config/{PURGE_APP}", check=False).returncode == 1
