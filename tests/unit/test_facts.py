"""Parsers on real recorded outputs (probe, pg_lsclusters, pgbackrest info JSON, df)."""

from datetime import UTC, datetime

from pgmam_remote import facts

from .conftest import load


def test_probe_of_a_server_with_foreign_clusters(foreign):
    assert foreign.pg_versions == (15,)
    assert foreign.cpu_count == 2
    assert foreign.systemd is False
    assert all(foreign.tools.values())
    assert foreign.global_conf == "absent"
    assert foreign.managed_stanzas == frozenset()
    assert 5499 in foreign.listening_ports
    fixt, main = foreign.clusters
    assert (fixt.name, fixt.port, fixt.running, fixt.timeline, fixt.in_recovery) == ("fixt", 5499, True, 1, False)
    assert fixt.archiver.archived_count == 4 and not fixt.archiver.failing
    assert fixt.data_checksums is True and fixt.size_bytes > 1_000_000
    assert (main.name, main.running, main.timeline, main.archiver) == ("main", False, None, None)
    assert foreign.data_disk.free_bytes > 0


def test_lsclusters_text_including_recovery_status():
    lines = [
        *load("lsclusters.txt").splitlines(),
        "16  replica 5434 online,recovery postgres /var/lib/postgresql/16/replica /var/log/postgresql/x.log",
        "garbage line",
    ]
    clusters = facts.parse_lsclusters(lines)
    assert [(c.version, c.name, c.port) for c in clusters] == [
        (15, "fixt", 5499),
        (15, "main", 5432),
        (16, "replica", 5434),
    ]
    assert clusters[2].recovering and clusters[2].running
    assert clusters[0].config_dir == "/etc/postgresql/15/fixt"


def test_listen_addresses_ipv4_ipv6_wildcard():
    assert facts.parse_listen(["127.0.0.1:5432", "[::1]:5433", "*:22", "0.0.0.0:2024", ""]) == {5432, 5433, 22, 2024}


def test_df_deduplicates_mounts():
    disks = facts.parse_df(load("df.txt").splitlines())
    assert len(disks) == 1 and disks[0].mount == "/" and disks[0].total_bytes > disks[0].free_bytes


def test_pgbackrest_info_one_full_backup():
    stanza = facts.parse_pgbackrest_info(load("pgbackrest-info-one-full.json"))["fixt"]
    assert stanza.exists and stanza.status_code == 0 and not stanza.backup_running
    assert [b.type for b in stanza.backups] == ["full"]
    backup = stanza.last
    assert backup is stanza.last_full is stanza.first
    assert backup.label == "20261124-001715F"
    assert backup.stop == datetime(2026, 11, 24, 0, 17, 18, tzinfo=UTC)
    assert backup.repo_size < backup.size  # zst compression
    assert (stanza.wal_min, stanza.wal_max) == ("000000010000000000000001", "000000010000000000000003")


def test_pgbackrest_info_missing_stanza():
    text = (
        '[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"nosuch","repo":[{"cipher":"none","key":1,'
        '"status":{"code":1,"message":"missing stanza path"}}],"status":{"code":1,"lock":{"backup":{"held":false}},'
        '"message":"missing stanza path"}}]'
    )
    stanza = facts.parse_pgbackrest_info(text)["nosuch"]
    assert not stanza.exists and stanza.last is None


def test_probe_survives_broken_sections():
    text = (
        "@@host\nh\n@@now\nnot-a-number\n@@pgbackrest\nERROR: [041]: unable to open file\n"
        "@@sql 15 x\npsql: error: boom\n"
    )
    parsed = facts.parse_probe(text + "@@clusters\n15 x 5432 online postgres /d /l\n")
    assert parsed.pgbackrest_error == "ERROR: [041]: unable to open file"
    assert parsed.clusters[0].sql_error == "psql: error: boom"
    assert parsed.pg_versions == () and parsed.cpu_count == 1


def test_archiver_failing_only_when_last_failure_is_newer():
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    assert facts.ArchiverStats(3, "w", t2, 1, "w", t1).failing is False
    assert facts.ArchiverStats(3, "w", t1, 1, "w", t2).failing is True
    assert facts.ArchiverStats(0, None, None, 1, "w", t1).failing is True
