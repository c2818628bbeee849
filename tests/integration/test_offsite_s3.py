"""Off-host repos in S3, over real SSH against the sandbox's own S3 server (a single-node Ceph,
radosgw on TLS, `sandbox.up(..., s3=True)`): an app kept in a bucket, encrypted, through an outage
of the bucket, drilled from it, and purged from it.

sbx1 runs the apps and reads and writes the bucket itself; the operator's machine only passes it
the keys (from the environment) and the passphrase, on stdin. What matters: initcluster gives the
app a stanza and a first full backup in the bucket under sbx1's own prefix, with every object
there ciphertext; new WAL reaches the bucket by itself; while the bucket is cut off the app and
its local backups carry on, status turns red naming the repo, and after the link returns
everything arrives with no hole; a drill restores from the bucket on sbx1 and on sbx2; missing
keys or a wrong passphrase are refused with the servers unchanged; a purge leaves nothing of the
app in the bucket. Last, sbx1 is destroyed under writes and `inv recover` brings both its apps
back on sbx2 from the bucket, with exactly the data the bucket had, and sbx2 keeps them there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import pgmam_sandbox as sandbox

from .conftest import run_inv
from .test_offsite import app_status, checksums, pgbench, switch_wal, wait_until

SERVERS = 2
S3 = True
SERVER, APP, PORT, NEW = "sbx1", "shop", 5432, "sbx2"
OTHER, OTHER_PORT = "blog", 5433
CONF = "/etc/pgbackrest/pgmam/repos/bucket.conf"


@pytest.fixture(scope="module")
def s3(box, tmp_path_factory):
    """An inventory where sbx1 and sbx2 keep their apps in repo bucket, the keys in the
    environment, and a config dir for the passphrase."""
    home = tmp_path_factory.mktemp("s3")
    inventory = home / "hosts.toml"
    text = box.inventory.read_text()
    for host in (SERVER, NEW):
        text = text.replace(f"[hosts.{host}]\n", f'[hosts.{host}]\nrepos = ["bucket"]\n')
    inventory.write_text(text)
    keys = sandbox.s3_env(box.sandbox.state_dir)
    config = home / "config"

    def call(*args: str, config_dir: Path = config, env: dict[str, str] | None = None, **kwargs):
        full = {**keys, "PGMAM_CONFIG_DIR": str(config_dir), **(env or {})}
        return run_inv(*args, inventory=inventory, env=full, **kwargs)

    call.config = config  # type: ignore[attr-defined]
    call.keys = keys  # type: ignore[attr-defined]
    return call


def in_bucket(
    box, *argv: str, cipher: bool = True, head: bool = False, on: str = SERVER
) -> subprocess.CompletedProcess[str]:
    """pgbackrest on a server (sbx1) with its installed repo config (or, with cipher=False, without
    the passphrase: the raw objects); head: only the first 8 bytes of its output."""
    conf = CONF
    if not cipher:
        box.on(on, "sh", "-c", f"grep -v '^repo1-cipher' {CONF} > /tmp/raw.conf && chown postgres /tmp/raw.conf")
        conf = "/tmp/raw.conf"
    cmd = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={conf}", *argv]
    script = 'cd /tmp && "$@" | head -c 8' if head else 'cd /tmp && exec "$@"'
    return box.on(on, "sh", "-c", script, "sh", *cmd, check=False)


def bucket_info(box, app: str = APP, *, on: str = SERVER, prefix: str = f"/pgmam/{SERVER}") -> dict:
    argv = ("--config-include-path=/etc/pgbackrest/conf.d", f"--repo1-path={prefix}", f"--stanza={app}")
    return json.loads(in_bucket(box, *argv, "--output=json", "info", on=on).stdout)[0]


def archive_max(box) -> str:
    return bucket_info(box)["archive"][0]["max"]


def status(s3, host: str = SERVER) -> tuple[int, dict]:
    out = s3("status", "--host", host, "--json")
    return out.returncode, json.loads(out.stdout)


def server_state(box) -> tuple[list[str], ...]:
    listing = "ls -R /etc/pgbackrest /var/lib/pgmam/ship 2>/dev/null; true"
    return tuple((box.clusters(host), box.on(host, "sh", "-c", listing).stdout) for host in (SERVER, NEW))


def test_initcluster_keeps_the_app_in_the_bucket_encrypted(box, s3):
    out = s3("initcluster", "--host", SERVER, "--app", APP, "--port", str(PORT))
    assert out.returncode == 0, out.stderr
    assert "off-host   repo bucket on s3://pgmam: backup " in out.stderr
    passphrase = (s3.config / "repo-bucket.passphrase").read_text().strip()
    for secret in (passphrase, *s3.keys.values()):
        assert secret not in out.stdout + out.stderr
    mode = box.on(SERVER, "stat", "-c", "%U:%G %a", CONF).stdout.split()
    assert mode == ["root:postgres", "640"]

    info = bucket_info(box)
    assert [b["type"] for b in info["backup"]] == ["full"] and info["cipher"] == "aes-256-cbc"
    # sbx1's own prefix, and every object there is ciphertext: read raw, without the passphrase
    listed = json.loads(in_bucket(box, "--output=json", "repo-ls", "--recurse", cipher=False).stdout)
    files = [path for path, entry in listed.items() if entry["type"] == "file"]
    assert len(files) > 10 and "backup/shop/backup.info" in files
    for path in [*files[:: max(1, len(files) // 25)], "backup/shop/backup.info", "archive/shop/archive.info"]:
        head = in_bucket(box, "repo-get", path, cipher=False, head=True).stdout
        assert head == "Salted__", f"{path} starts with {head!r}"

    box.psql(SERVER, PORT, "create table t (id int, v text)")
    segment = switch_wal(box, 100)
    wait_until(lambda: archive_max(box) >= segment, 90, f"{segment} in the bucket")
    code, payload = status(s3)
    repo = app_status(payload)["offsite"][0]
    assert code == 0, app_status(payload)["problems"]
    assert (repo["repo"], repo["where"], repo["backup_count"]) == ("bucket", "s3://pgmam", 1)
    assert repo["recovery_window"]["breaks"] == []

    again = s3("initcluster", "--host", SERVER, "--app", APP, "--port", str(PORT))
    assert again.returncode == 0 and "already PITR-ready; nothing changed" in again.stderr


def test_an_outage_of_the_bucket_never_holds_the_app_up(box, s3):
    before = archive_max(box)
    link = box.naming.s3_veth
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        segments = [switch_wal(box, 1000) for _ in range(3)]
        wait_until(
            lambda: box.psql(SERVER, PORT, "select last_archived_wal from pg_stat_archiver") >= segments[-1],
            60,
            "local archiving",
        )
        backup = s3("backup", "--host", SERVER, "--app", APP)
        assert backup.returncode == 0, backup.stderr

        def lagging() -> bool:  # once a shipper pass has failed to push (about 8 x io-timeout)
            return any(p.startswith("bucket: WAL ") for p in app_status(status(s3)[1])["problems"])

        wait_until(lagging, 240, "status to name the WAL waiting for the bucket")
        code, payload = status(s3)
        app = app_status(payload)
        assert code == 1
        assert any("repo bucket (s3://pgmam) unreachable" in p for p in app["problems"]), app
        assert app["offsite"][0]["waiting"]["files"] >= 3
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    assert archive_max(box) == before  # nothing got through

    wait_until(lambda: status(s3)[0] == 0, 300, "status healthy again after the outage")
    assert archive_max(box) >= segments[-1]

    def caught_up() -> bool:  # a segment the app closes meanwhile waits for the next pass (5 s)
        repo = app_status(status(s3)[1])["offsite"][0]
        assert repo["recovery_window"]["breaks"] == [], repo
        return repo["waiting"]["files"] == 0

    wait_until(caught_up, 60, "nothing waiting for the bucket")


def test_backups_and_a_drill_from_the_bucket(box, s3):
    out = s3("backup", "--host", SERVER, "--app", APP, "--repo", "bucket", "--type", "diff")
    assert out.returncode == 0, out.stderr
    assert [b["type"] for b in bucket_info(box)["backup"]] == ["full", "diff"]
    listed = json.loads(s3("backups", "--host", SERVER, "--app", APP, "--json").stdout)
    (repo,) = listed["offsite"]
    assert (repo["repo"], repo["where"], repo["error"]) == ("bucket", "s3://pgmam", None)
    assert [b["label"] for b in repo["backups"]] == [b["label"] for b in bucket_info(box)["backup"]]

    rows = box.psql(SERVER, PORT, "select count(*) from t")
    drill = s3("verify", "--host", SERVER, "--app", APP, "--repo", "bucket")
    assert drill.returncode == 0, drill.stderr
    proven = app_status(status(s3)[1])["offsite"][0]["last_proven_restorable"]
    assert proven["ok"] and proven["backup"] == bucket_info(box)["backup"][-1]["label"], proven
    assert box.psql(SERVER, PORT, "select count(*) from t") == rows  # the app itself untouched
    # on sbx2, which reads the bucket as it would after losing sbx1
    elsewhere = s3("verify", "--host", SERVER, "--app", APP, "--repo", "bucket", "--on", NEW)
    assert elsewhere.returncode == 0, elsewhere.stderr
    proven = app_status(status(s3)[1])["offsite"][0]["last_proven_restorable"]
    assert proven["ok"] and proven["on"] == NEW, proven
    assert box.clusters(NEW) == []  # only a throwaway copy was made there


def test_missing_keys_or_a_wrong_passphrase_are_refused_and_change_nothing(box, s3, tmp_path):
    before = server_state(box)
    no_keys = s3(
        "initcluster", "--host", SERVER, "--app", "blog", "--port", "5433", env={"PGMAM_SANDBOX_S3_SECRET": ""}
    )
    assert no_keys.returncode != 0
    assert (
        "repo 'bucket' needs its credentials in the environment: PGMAM_SANDBOX_S3_SECRET is not set" in no_keys.stderr
    )
    assert "hosts.toml:" in no_keys.stderr
    wrong = tmp_path / "config"
    wrong.mkdir(mode=0o700)
    (wrong / "repo-bucket.passphrase").write_text("not-the-passphrase\n")
    refused = s3("initcluster", "--host", SERVER, "--app", "blog", "--port", "5433", config_dir=wrong)
    assert refused.returncode == 1
    assert "is not the one the backups in s3://pgmam/pgmam/sbx1 were encrypted with" in refused.stderr
    missing = s3("initcluster", "--host", SERVER, "--app", "blog", "--port", "5433", config_dir=tmp_path / "none")
    assert missing.returncode == 1 and "its passphrase is missing" in missing.stderr
    late = s3("recover", "--host", NEW, "--from", SERVER, "--app", APP, "--to", "2099-01-01 00:00:00+00", "--yes")
    assert late.returncode == 1 and "is after the newest WAL repo bucket" in late.stderr, late.stderr
    none = s3("recover", "--host", NEW, "--from", "sbx9", "--repo", "bucket", "--all-apps", "--yes")
    assert none.returncode == 1 and "keeps no backup of sbx9's apps" in none.stderr, none.stderr
    assert server_state(box) == before


def test_a_purged_app_leaves_nothing_in_the_bucket(box, s3):
    made = s3("initcluster", "--host", SERVER, "--app", "gone", "--port", "5436")
    assert made.returncode == 0, made.stderr
    held = lambda: in_bucket(box, "--output=json", "repo-ls", "backup").stdout  # noqa: E731
    assert '"gone"' in held()
    # with the bucket cut off, a purge is refused before the app is dropped: it could not be finished
    subprocess.run(["ip", "link", "set", box.naming.s3_veth, "down"], check=True)
    try:
        refused = s3("dropcluster", "--host", SERVER, "--app", "gone", "--purge-backups", "--yes")
    finally:
        subprocess.run(["ip", "link", "set", box.naming.s3_veth, "up"], check=True)
    assert refused.returncode == 1 and "repo bucket (s3://pgmam/pgmam/sbx1) cannot be read" in refused.stderr
    assert "15 gone 5436 online" in box.clusters(SERVER)
    dropped = s3("dropcluster", "--host", SERVER, "--app", "gone", "--purge-backups", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert "delete gone's backups and WAL in repo bucket" in dropped.stderr
    assert '"gone"' not in held() and '"gone"' not in in_bucket(box, "--output=json", "repo-ls", "archive").stdout
    assert bucket_info(box)["status"]["code"] == 0  # the app that stays is untouched


def test_a_lost_server_is_rebuilt_from_the_bucket_with_the_data_it_had(box, s3):
    made = s3("initcluster", "--host", SERVER, "--app", OTHER, "--port", str(OTHER_PORT))
    assert made.returncode == 0, made.stderr
    for port in (PORT, OTHER_PORT):
        assert pgbench(box, SERVER, port, "-i", "-s", "2", "-q").returncode == 0
        assert pgbench(box, SERVER, port, "-T", "10", "-c", "2").returncode == 0
    archived = checksums(box, SERVER)
    for app, port in ((APP, PORT), (OTHER, OTHER_PORT)):
        segment = box.psql(SERVER, port, "select pg_walfile_name(pg_switch_wal())")
        wait_until(
            lambda app=app, segment=segment: bucket_info(box, app)["archive"][0]["max"] >= segment,
            120,
            f"{app}'s {segment} in the bucket",
        )
    for port in (PORT, OTHER_PORT):  # writes that never reach the bucket: lost with the server
        box.psql(SERVER, port, "update pgbench_accounts set abalance = abalance + 1 where aid <= 100")
    assert checksums(box, SERVER) != archived
    subprocess.run(["ip", "link", "set", box.naming.host_veth(1), "down"], check=True)
    box.on(
        SERVER, "sh", "-c", "systemctl kill --signal=KILL 'postgresql@*' 'pgmam-ship*'; rm -rf /var/lib/postgresql/15"
    )

    out = s3("recover", "--host", NEW, "--from", SERVER, "--all-apps", "--yes", timeout=900)
    assert out.returncode == 0, out.stderr
    assert "2 app(s) of sbx1 recovered on sbx2" in out.stderr
    assert box.clusters(NEW) == [f"15 {OTHER} {OTHER_PORT} online", f"15 {APP} {PORT} online"]  # their own ports
    assert checksums(box, NEW) == archived

    # sbx2 is their home now: archiving into the bucket under its own prefix, healthy
    for port in (PORT, OTHER_PORT):
        box.psql(NEW, port, "insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, 1, now())")
    code, payload = status(s3, NEW)
    assert code == 0, [c["problems"] for c in payload["hosts"][0]["clusters"]]
    for cluster in payload["hosts"][0]["clusters"]:
        (repo,) = cluster["offsite"]
        assert repo["backup_count"] == 1 and repo["recovery_window"]["breaks"] == []
    # sbx1's backups are still in the bucket, readable
    assert len(bucket_info(box, APP, on=NEW)["backup"]) >= 2
