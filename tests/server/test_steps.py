"""Each step script of a restore, run in order against the throwaway server's real PostgreSQL and
pgBackRest, as a pitr job runs them: restore into staging, start, prove, examine, swap, verify.

The tests in this module build on each other in file order (one app, one restore story)."""

from __future__ import annotations

import tarfile

import pytest

from .conftest import VERSION, Throwaway

DATA = f"/var/lib/postgresql/{VERSION}/shop"
STAGING = f"/var/lib/postgresql/{VERSION}/staging-shop-20261202T000000Z"
OLD = f"/var/lib/postgresql/{VERSION}/old-shop-20261202T000000Z"
RUN = "/var/lib/pgmam/run/shop"
JOB = "/var/lib/pgmam/jobs/pitr-shop-20261202T000000Z"
STAGING_PORT = 25432


def notes(out: str) -> dict[str, str]:
    return dict(line.removeprefix("pgmam-note ").split("=", 1) for line in out.splitlines() if "pgmam-note " in line)


@pytest.fixture(scope="module")
def story(server: Throwaway) -> dict[str, str]:
    """The app's history: 100 rows in the full backup, then settings an operator may have set with
    ALTER SYSTEM (in the data dir, so in every backup), 50 rows before the target, 25 after."""
    state: dict[str, str] = {}
    alter = {"shared_buffers": "'256MB'", "logging_collector": "on", "archive_mode": "on", "listen_addresses": "'*'"}
    for name, value in alter.items():
        server.sql(f"alter system set {name} = {value}")
    state["backup"] = notes(server.step("backup", "shop", VERSION, "incr").stdout)["backup"]
    server.sql("alter system reset all")
    server.sql("insert into items select g, 'before the target' from generate_series(101, 150) g")
    state["target"] = server.sql("select now()::text")
    server.sql("insert into items select g, 'after the target' from generate_series(151, 175) g")
    server.step("archive-now", 5432, "shop")
    return state


def test_backup_stores_the_config_beside_the_newest_backup(server: Throwaway, story):
    label = server.step("newest-label", "shop").stdout.strip()
    assert label == story["backup"] and label.endswith("I")  # the incremental one, not the full
    snapshot = server.path(f"/var/lib/pgbackrest/pgmam-config/shop/{label}.tar.gz")
    with tarfile.open(snapshot) as tar:
        assert "shop/postgresql.conf" in tar.getnames() and "shop/conf.d/pgmam.conf" in tar.getnames()


def test_restore_into_staging_replays_to_the_target_and_proves_it(server: Throwaway, story):
    target = ["--type=time", f"--target={story['target']}", "--target-timeline=1"]
    conf = f"/etc/postgresql/{VERSION}/shop/postgresql.conf"
    restored = server.step("restore-staging", "shop", STAGING, story["backup"], RUN, STAGING_PORT, conf, *target)
    assert notes(restored.stdout)["config"].endswith(f"{story['backup']}.tar.gz")  # the config as it was then
    server.step("start-staging", VERSION, STAGING, RUN, STAGING_PORT, 600)
    proof = notes(server.step("prove-recovery", RUN, STAGING_PORT, f"{RUN}/staging.log", 1, STAGING).stdout)
    assert proof["timeline"] == "2" and proof["stop"].split("_")[0] in ("before", "after")
    rows = server.sql("select count(*), max(id) from items", port=STAGING_PORT, host=RUN)
    assert rows == "150|150"  # the 25 rows after the target are not there


def test_the_temporary_instance_keeps_its_own_settings_over_the_apps_alter_system(server: Throwaway, story):
    settings = "select string_agg(name || '=' || setting, ' ' order by name) from pg_settings where name in " + (
        "('port', 'shared_buffers', 'logging_collector', 'archive_mode', 'listen_addresses', 'lc_messages')"
    )
    shown = dict(pair.split("=", 1) for pair in server.sql(settings, port=STAGING_PORT, host=RUN).split())
    assert shown == {
        "archive_mode": "off",  # it never archives into the live app's stanza
        "lc_messages": "C",
        "listen_addresses": "",
        "logging_collector": "off",
        "port": str(STAGING_PORT),
        "shared_buffers": str(128 * 1024 // 8),  # 8 kB pages: 128MB, not the app's 256MB
    }
    # what the restored data dir itself says (the ALTER SYSTEM of the backup) is still there
    assert "logging_collector = 'on'" in server.path(f"{STAGING}/postgresql.auto.conf").read_text()


def test_a_restore_drill_examines_the_copy_and_records_the_result(server: Throwaway, story):
    out = server.step("drill", RUN, STAGING_PORT, VERSION, "shop", story["backup"], "latest").stdout
    assert notes(out) == {"tables": "1", "rows": "150", "amcheck": "ok"}
    assert "rows postgres.public.items|150" in out
    record = server.path("/var/lib/pgmam/verify/shop").read_text().split()
    assert record[1:4] == ["ok", story["backup"], "1"]


def test_a_failed_drill_is_recorded_unless_a_crash_is_being_recovered(server: Throwaway, story):
    results = server.path("/var/lib/pgmam/verify/shop")
    before = results.read_text()
    server.step("record-drill-failure", "shop", story["backup"], "latest", env={"PGMAM_RECOVERING": "1"})
    assert results.read_text() == before
    server.step("record-drill-failure", "shop", story["backup"], "latest")
    assert results.read_text().splitlines()[-1].split()[1:3] == ["failed", story["backup"]]


def test_stop_instance_stops_that_data_dirs_postmaster_and_never_another_process(server: Throwaway):
    server.step("stop-instance", VERSION, STAGING, "fast")
    assert not server.path(f"{STAGING}/postmaster.pid").exists()
    # after a reboot the pid in a stale pid file may be anybody's: here a process of the server's
    bystander = server.run("sh", "-c", "sleep 300 > /dev/null 2>&1 & echo $!").stdout.strip()
    pid_file = server.path(f"{STAGING}/postmaster.pid")
    pid_file.write_text(f"{bystander}\n{STAGING}\n")
    assert server.step("stop-instance", VERSION, STAGING, "immediate").returncode == 0
    assert server.run("kill", "-0", bystander, check=False).returncode == 0  # still alive
    pid_file.unlink()


def test_clean_restored_removes_the_staging_config_and_the_recovery_settings(server: Throwaway):
    auto = server.path(f"{STAGING}/postgresql.auto.conf")
    assert "Recovery settings generated by pgBackRest restore" in auto.read_text()
    server.step("clean-restored", STAGING)
    assert "restore_command" not in auto.read_text() and "logging_collector = 'on'" in auto.read_text()
    assert not server.path(f"{STAGING}/postgresql.conf").exists()
    assert not server.path(f"{STAGING}/recovery.signal").exists()


def test_move_never_overwrites(server: Throwaway):
    refused = server.step("move", STAGING, DATA, check=False)
    assert refused.returncode == 1 and f"{DATA} already exists" in refused.stdout
    assert server.path(f"{STAGING}/PG_VERSION").exists() and server.path(f"{DATA}/PG_VERSION").exists()


def test_the_swap_brings_the_app_back_on_the_restored_data_and_a_new_timeline(server: Throwaway):
    down = notes(server.step("stop-live", VERSION, "shop", 5432).stdout)["down_at"]
    server.step("move", DATA, OLD)
    server.step("move", STAGING, DATA)
    up = notes(server.step("start-live", VERSION, "shop", 5432).stdout)["up_at"]
    assert 0 < float(up) - float(down) < 60
    job = server.path(JOB)
    job.mkdir(parents=True)
    (job / "notes").write_text("timeline=2\n")
    verified = server.step("verify-live", 5432, "noted", env={"JOB_DIR": JOB})
    assert notes(verified.stdout) == {"live_timeline": "2"}
    assert server.sql("select count(*) from items") == "150"
    (job / "notes").write_text("timeline=3\n")
    wrong = server.step("verify-live", 5432, "noted", env={"JOB_DIR": JOB}, check=False)
    assert wrong.returncode == 1 and "on timeline 2, expected 3" in wrong.stdout


def test_start_live_fails_as_pg_ctlcluster_does_when_the_cluster_cannot_start(server: Throwaway):
    """The step ends as soon as the cluster accepts connections; one that never does fails with
    pg_ctlcluster's status and notes no up_at."""
    server.run("pg_ctlcluster", VERSION, "shop", "stop")
    broken = f"/etc/postgresql/{VERSION}/shop/conf.d/zz-broken.conf"
    server.step("write-file", broken, "postgres:postgres", "0644", "no_such_setting = on\n")
    try:
        failed = server.step("start-live", VERSION, "shop", 5432, check=False)
        assert failed.returncode != 0 and "up_at" not in failed.stdout
    finally:
        server.run("rm", "-f", broken)
        server.run("pg_ctlcluster", VERSION, "shop", "start")
    assert server.sql("select count(*) from items") == "150"


def test_undoing_the_start_and_the_moves_puts_the_old_data_back(server: Throwaway):
    server.step("stop-if-running", VERSION, "shop")
    assert server.step("stop-if-running", VERSION, "shop").returncode == 0  # nothing to stop: fine
    # a recovery after a crash discards the restored copy instead of keeping it aside
    server.step("move-back", DATA, "/var/lib/postgresql/15/failed-shop-x", "discard", env={"PGMAM_RECOVERING": "1"})
    assert not server.path(DATA).exists() and not server.path("/var/lib/postgresql/15/failed-shop-x").exists()
    server.step("move-back", OLD, DATA)
    assert server.step("move-back", OLD, DATA).returncode == 0  # already back: nothing to do
    server.step("start-unless-booting", VERSION, "shop")
    assert server.sql("select count(*) from items") == "175"  # every row of before the restore


def test_start_unless_booting_leaves_the_start_to_systemd_at_boot(server: Throwaway):
    server.run("pg_ctlcluster", VERSION, "shop", "stop")
    out = server.step("start-unless-booting", VERSION, "shop", env={"PGMAM_AT_BOOT": "1"}).stdout
    assert "systemd starts 15/shop next" in out
    assert server.run("pg_ctlcluster", VERSION, "shop", "status", check=False).returncode == 3  # still down
    server.step("start-unless-booting", VERSION, "shop")


def test_prepare_promote_reads_the_timeline_in_any_language(server: Throwaway, german: dict[str, str]):
    """pg_controldata's labels are translated; the script reads them in C whatever the locale."""
    server.run("pg_ctlcluster", VERSION, "shop", "stop")
    try:
        control = server.run(f"/usr/lib/postgresql/{VERSION}/bin/pg_controldata", DATA, env=german).stdout
        assert "Latest checkpoint's TimeLineID" not in control  # this server does speak German
        out = server.step("prepare-promote", VERSION, DATA, "shop", env=german)
        assert notes(out.stdout) == {"from_timeline": "1"}
        assert server.path(f"{DATA}/recovery.signal").exists()
        assert "--stanza=shop archive-get" in server.path(f"{DATA}/postgresql.auto.conf").read_text()
    finally:
        server.step("clean-restored", DATA)
        server.run("pg_ctlcluster", VERSION, "shop", "start")


def test_a_named_restore_point_is_created_and_recorded(server: Throwaway):
    lsn = server.step("create-point", 5432, "shop", "before migration 42").stdout.strip()
    assert "/" in lsn
    line = server.path("/var/lib/pgmam/restore-points/shop").read_text().splitlines()[-1]
    name, at, recorded = line.rsplit(" ", 2)
    assert name == "before migration 42" and recorded == lsn and float(at) > 0


def test_write_file_is_atomic_with_its_owner_and_mode(server: Throwaway):
    content = "# managed by pgmam\nline with 'quotes' and $dollars\n"
    server.step("write-file", "/etc/pgbackrest/conf.d/extra.conf", "root:postgres", "0640", content)
    written = server.path("/etc/pgbackrest/conf.d/extra.conf")
    assert written.read_text() == content and oct(written.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in written.parent.iterdir()) == ["extra.conf", "shop.conf"]  # no temp file left
    written.unlink()


@pytest.fixture
def cut(server: Throwaway):
    """A second stanza, cut, on shop's cluster, as a power cut leaves one in the middle of its
    stanza-create: archive.info written, backup.info not yet."""
    conf = "/etc/pgbackrest/conf.d/cut.conf"
    server.step("write-file", conf, "root:postgres", "0640", f"[cut]\npg1-path={DATA}\npg1-port=5432\n")
    server.step("create-stanza", "cut")
    backup = server.path("/var/lib/pgbackrest/backup/cut")
    for name in ("backup.info", "backup.info.copy"):
        (backup / name).unlink()
    yield backup
    server.step("delete-stanza", "cut")
    server.run("runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=cut", "start")
    server.path(conf).unlink()


def test_a_stanza_cut_short_before_any_backup_is_created_again(server: Throwaway, cut):
    refused = server.run("runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=cut", "stanza-create", check=False)
    assert refused.returncode == 55  # what a plain stanza-create says to it
    out = server.step("create-stanza", "cut")
    assert "cut short before its first backup" in out.stdout
    assert (cut / "backup.info").exists()
    info = server.run("runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=cut", "--output=json", "info")
    assert '"status":{"code":2' in info.stdout.replace(" ", "")  # ok, no backup yet (not an error)


def test_a_cut_stanza_holding_a_backup_is_left_as_it_is(server: Throwaway, cut):
    kept = cut / "20261202-000000F"
    kept.mkdir()
    kept.chmod(0o750)
    out = server.step("create-stanza", "cut", check=False)
    assert out.returncode == 55 and "holds backups: it is left as it is" in out.stderr
    assert kept.is_dir() and (server.path("/var/lib/pgbackrest/archive/cut") / "archive.info").exists()
    kept.rmdir()
