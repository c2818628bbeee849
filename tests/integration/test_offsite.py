"""Off-host repos over real SSH: an app kept on a repository host, encrypted, through an outage,
and a lost server's apps rebuilt on another.

sbx1 runs the apps; sbx2 is the repository host of repo "vault"; sbx3 is a fresh server. What
matters: initcluster gives the app a stanza and a first full backup on sbx2, encrypted with a
passphrase that only the operator's machine and sbx2 hold; new WAL reaches sbx2 by itself; while
sbx2 is cut off the app and its local backups carry on, status turns red naming the repo and what
waits, and after the link returns everything arrives with no hole; a wrong or missing passphrase,
or an app not kept there, is refused with both servers unchanged. When sbx1 is destroyed under
writes, `inv recover` brings both its apps back on sbx3 with exactly the data the repo had, and
sbx3 becomes their home, healthy; recover's refusals leave sbx3 unchanged.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .conftest import run_inv

SERVERS = 3
APP, PORT = "shop", 5432
OTHER, OTHER_PORT = "blog", 5433
SERVER, VAULT, NEW = "sbx1", "sbx2", "sbx3"
HOSTED_CONF = f"/etc/pgbackrest/pgmam/hosts/{SERVER}"
HOSTED_REPO = f"/var/lib/pgbackrest/hosts/{SERVER}"


@pytest.fixture(scope="module")
def offsite(box, tmp_path_factory):
    """An inventory where sbx1 backs up to repo vault on sbx2, and a config dir for its passphrase."""
    home = tmp_path_factory.mktemp("offsite")
    text = box.inventory.read_text()
    for host in (SERVER, NEW):
        text = text.replace(f"[hosts.{host}]\n", f'[hosts.{host}]\nrepos = ["vault"]\n')
    inventory = home / "hosts.toml"
    inventory.write_text(text + f'\n[repos.vault]\ntype = "host"\nhost = "{VAULT}"\n')
    config = home / "config"

    def call(*args: str, config_dir: Path = config, **kwargs) -> subprocess.CompletedProcess[str]:
        return run_inv(*args, inventory=inventory, env={"PGMAM_CONFIG_DIR": str(config_dir)}, **kwargs)

    call.config = config  # type: ignore[attr-defined]
    call.inventory = inventory  # type: ignore[attr-defined]
    return call


def vault_info(box, app: str = APP) -> dict:
    argv = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--config-path={HOSTED_CONF}", f"--stanza={app}"]
    out = box.on(VAULT, "sh", "-c", 'cd /tmp && exec "$@"', "sh", *argv, "--output=json", "info").stdout
    return json.loads(out)[0]


def vault_archive_max(box) -> str:
    return vault_info(box)["archive"][0]["max"]


def switch_wal(box, rows: int) -> str:
    """Writes rows, then closes the WAL segment: returns its name, which archiving will copy."""
    box.psql(SERVER, PORT, f"insert into t select g, md5(g::text) from generate_series(1, {rows}) g")
    segment = box.psql(SERVER, PORT, "select pg_walfile_name(pg_current_wal_lsn())")
    box.psql(SERVER, PORT, "select pg_switch_wal()")
    return segment


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(2)


def run_status(offsite, host: str) -> tuple[int, dict]:
    out = offsite("status", "--host", host, "--json")
    return out.returncode, json.loads(out.stdout)


def status(offsite) -> tuple[int, dict]:
    return run_status(offsite, SERVER)


def app_status(payload: dict) -> dict:
    return next(c for c in payload["hosts"][0]["clusters"] if c["app"] == APP)


def test_initcluster_keeps_the_app_off_host_encrypted(box, offsite):
    out = offsite("initcluster", "--host", SERVER, "--app", APP, "--port", str(PORT))
    assert out.returncode == 0, out.stderr
    assert "off-host   repo vault on sbx2: backup " in out.stderr
    passphrase_file = offsite.config / "repo-vault.passphrase"
    assert stat.S_IMODE(passphrase_file.stat().st_mode) == 0o600
    passphrase = passphrase_file.read_text().strip()
    assert len(passphrase) >= 40
    assert passphrase not in out.stdout + out.stderr
    assert "Keep a copy somewhere safe" in out.stderr

    info = vault_info(box)
    assert [b["type"] for b in info["backup"]] == ["full"]
    assert info["cipher"] == "aes-256-cbc"
    # every file of the repo there is ciphertext: no plain zstd, no plain text
    files = box.on(VAULT, "find", HOSTED_REPO, "-type", "f").stdout.split()
    assert len(files) > 10
    for path in files:
        head = box.on(VAULT, "head", "-c", "8", path).stdout
        assert head == "Salted__", f"{path} starts with {head!r}"
    mode = box.on(VAULT, "stat", "-c", "%U:%G %a", f"{HOSTED_CONF}/pgbackrest.conf").stdout.split()
    assert mode == ["root:postgres", "640"]

    # new WAL arrives by itself, and status says all is well
    box.psql(SERVER, PORT, "create table t (id int, v text)")
    segment = switch_wal(box, 100)
    wait_until(lambda: vault_archive_max(box) >= segment, 60, f"{segment} on {VAULT}")
    code, payload = status(offsite)
    repo = app_status(payload)["offsite"][0]
    assert code == 0, app_status(payload)["problems"]
    assert repo["repo"] == "vault" and repo["backup_count"] == 1 and repo["recovery_window"]["breaks"] == []

    # a re-run changes nothing
    again = offsite("initcluster", "--host", SERVER, "--app", APP, "--port", str(PORT))
    assert again.returncode == 0 and "already PITR-ready; nothing changed" in again.stderr


def test_an_outage_of_the_repo_host_never_holds_the_app_up(box, offsite):
    before = vault_archive_max(box)
    link = box.naming.host_veth(2)
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        segments = [switch_wal(box, 1000) for _ in range(3)]
        # local archiving goes on, and so do local backups
        wait_until(
            lambda: box.psql(SERVER, PORT, "select last_archived_wal from pg_stat_archiver") >= segments[-1],
            60,
            "local archiving",
        )
        backup = offsite("backup", "--host", SERVER, "--app", APP)
        assert backup.returncode == 0, backup.stderr

        def lagging() -> bool:  # once a shipper pass has failed to push
            return any(p.startswith("vault: WAL ") for p in app_status(status(offsite)[1])["problems"])

        wait_until(lagging, 90, "status to name the WAL waiting for vault")
        code, payload = status(offsite)
        app = app_status(payload)
        assert code == 1
        assert any(p.startswith("vault: WAL ") and "files" in p and "waiting" in p for p in app["problems"]), app
        assert any("repo vault (sbx2) unreachable" in p for p in app["problems"]), app
        assert app["offsite"][0]["waiting"]["files"] >= 3
        assert vault_archive_max(box) == before  # nothing got through (read on the repository host itself)
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)

    wait_until(lambda: status(offsite)[0] == 0, 120, "status healthy again after the outage")
    ship_state = box.on(SERVER, "sh", "-c", f"tail -n 5 /var/lib/pgmam/ship/vault/{APP}/*", check=False).stdout
    assert vault_archive_max(box) >= segments[-1], (app_status(status(offsite)[1])["offsite"], ship_state)
    repo = app_status(status(offsite)[1])["offsite"][0]
    assert repo["waiting"]["files"] == 0 and repo["recovery_window"]["breaks"] == []


def test_backup_into_the_off_host_repo(box, offsite):
    out = offsite("backup", "--host", SERVER, "--app", APP, "--repo", "vault", "--type", "diff")
    assert out.returncode == 0, out.stderr
    assert [b["type"] for b in vault_info(box)["backup"]] == ["full", "diff"]
    # the backup carries the cluster's config, for a server rebuilt from it
    assert box.on(SERVER, "test", "-s", "/var/lib/postgresql/15/shop/pgmam-config.tar.gz").returncode == 0


def timers(box) -> list[str]:
    out = box.on(SERVER, "systemctl", "list-timers", "--all", "--no-legend", "pgmam-schedule-*").stdout
    return sorted(w for w in out.split() if w.startswith("pgmam-schedule-") and w.endswith(".timer"))


def test_scheduled_backups_go_into_the_repo_and_a_failing_one_stays_red(box, offsite):
    """A timer takes an incremental backup into vault at the next minute; a scheduled run while
    sbx2 is cut off fails and turns status red, and a good local backup after it does not hide
    that; the next good run into vault clears it. A scheduled drill from vault proves its newest
    backup."""
    before = [b["label"] for b in vault_info(box)["backup"]]
    now = datetime.fromisoformat(box.on(SERVER, "date", "+%Y-%m-%dT%H:%M:%S").stdout.strip())
    at = (now + timedelta(seconds=75 if now.second > 40 else 60)).replace(second=0)
    out = offsite("schedule", "--host", SERVER, "--app", APP)  # local backups, and vault's by default
    assert out.returncode == 0 and "full backups into repo vault Sun 04:00" in out.stderr, out.stderr
    out = offsite("schedule", "--host", SERVER, "--app", APP, "--repo", "vault", "--incr", at.strftime("%H:%M"))
    assert out.returncode == 0, out.stderr
    assert f"incr backups into repo vault {at:%H:%M}" in out.stderr
    assert timers(box) == [
        f"pgmam-schedule-{APP}-{k}.timer" for k in ("diff", "full", "vault-diff", "vault-full", "vault-incr")
    ]

    wait_until(lambda: len(vault_info(box)["backup"]) > len(before), 150, "the timer's backup into vault")
    new = [b["label"] for b in vault_info(box)["backup"] if b["label"] not in before]
    assert new[0].endswith("I"), new
    service = f"pgmam-schedule-{APP}-vault-incr.service"
    wait_until(
        lambda: box.on(SERVER, "systemctl", "is-active", service, check=False).stdout.strip() == "inactive",
        60,
        "the run to end",
    )
    last = app_status(status(offsite)[1])["last_scheduled"]
    assert (last["type"], last["ok"], last["label"]) == ("vault-incr", True, new[0])

    link = box.naming.host_veth(2)
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        failed = box.on(SERVER, "systemctl", "start", f"pgmam-schedule-{APP}-vault-diff.service", check=False)
        assert failed.returncode != 0
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    box.on(SERVER, "systemctl", "start", f"pgmam-schedule-{APP}-diff.service")  # a good local one after it
    app = app_status(status(offsite)[1])
    assert app["last_scheduled"]["type"] == "diff" and app["last_scheduled"]["ok"]
    assert any(p.startswith("scheduled diff backup into repo vault failed") for p in app["problems"]), app["problems"]

    box.on(SERVER, "systemctl", "start", f"pgmam-schedule-{APP}-vault-diff.service")
    assert [b["type"] for b in vault_info(box)["backup"]][-1] == "diff"
    wait_until(lambda: not app_status(status(offsite)[1])["problems"], 60, "status healthy after a good run")

    # backups lists the repo, with the window there
    listed = json.loads(offsite("backups", "--host", SERVER, "--app", APP, "--json").stdout)
    (repo,) = listed["offsite"]
    assert repo["repo"] == "vault" and repo["error"] is None
    assert [b["label"] for b in repo["backups"]] == [b["label"] for b in vault_info(box)["backup"]]
    assert repo["recovery_window"]["start"] and repo["recovery_window"]["breaks"] == []

    # refused, changing nothing: a drill scheduled from the repo, a repo the host does not use
    # a scheduled drill from the repo, run now as its timer would: status shows it per repo
    unused = offsite("schedule", "--host", VAULT, "--app", APP, "--repo", "vault")
    assert unused.returncode == 1 and "sbx2 does not back up to repo vault" in unused.stderr
    drill = offsite("schedule", "--host", SERVER, "--app", APP, "--repo", "vault", "--verify", "Sun 06:00")
    assert drill.returncode == 0 and "restore drills from repo vault Sun 06:00" in drill.stderr, drill.stderr
    # re-running --repo vault replaces vault's calendars: its defaults and the drill, no incr now
    kinds = ("diff", "full", "vault-diff", "vault-full", "vault-verify")
    assert timers(box) == [f"pgmam-schedule-{APP}-{k}.timer" for k in kinds]
    box.on(SERVER, "systemctl", "start", f"pgmam-schedule-{APP}-vault-verify.service")
    app = app_status(status(offsite)[1])
    proven = app["offsite"][0]["last_proven_restorable"]
    assert proven["ok"] and proven["backup"] == vault_info(box)["backup"][-1]["label"], proven
    assert app["last_scheduled"]["type"] == "vault-verify" and not app["problems"]
    out = offsite("schedule", "--host", SERVER, "--app", APP, "--repo", "vault", "--remove")
    assert out.returncode == 0 and timers(box) == [f"pgmam-schedule-{APP}-{k}.timer" for k in ("diff", "full")]
    out = offsite("schedule", "--host", SERVER, "--app", APP, "--remove")
    assert out.returncode == 0 and timers(box) == []


def drill_dirs(box, server: str) -> str:
    return box.on(server, "sh", "-c", "ls -d /var/lib/postgresql/15/verify-* 2>/dev/null", check=False).stdout


def test_drills_from_the_repo_on_the_server_and_on_another(box, offsite):
    """A drill restores the newest backup in vault on sbx1 itself, then on sbx3, which reads
    vault as it would after losing sbx1; status on sbx1 shows both, with their time. A drill on a
    server that cannot reach the repo fails, and sbx1's status is red until a good drill; the
    refusals change nothing."""
    rows = box.psql(SERVER, PORT, "select count(*) from t")
    here = offsite("verify", "--host", SERVER, "--app", APP, "--repo", "vault")
    assert here.returncode == 0, here.stderr
    assert "from repo vault restores" in here.stderr
    proven = app_status(status(offsite)[1])["offsite"][0]["last_proven_restorable"]
    assert proven["ok"] and proven["on"] is None and proven["seconds"] is not None
    assert proven["rows"] >= int(rows) - 10000  # the newest backup's rows, at least (more WAL came since)

    clusters_there = box.clusters(NEW)
    elsewhere = offsite("verify", "--host", SERVER, "--app", APP, "--repo", "vault", "--on", NEW)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert f"from repo vault, on {NEW} restores" in elsewhere.stderr
    proven = app_status(status(offsite)[1])["offsite"][0]["last_proven_restorable"]
    assert proven["ok"] and proven["on"] == NEW
    assert box.clusters(NEW) == clusters_there and drill_dirs(box, NEW) == ""

    # sbx3 alone loses its way to the repository host (pgmam on this machine still reaches both)
    blackhole = ["ip", "route", "add", "blackhole", box.server(VAULT).address]
    box.on(NEW, *blackhole)
    try:
        failed = offsite("verify", "--host", SERVER, "--app", APP, "--repo", "vault", "--on", NEW)
    finally:
        box.on(NEW, "ip", "route", "del", "blackhole", box.server(VAULT).address)
    assert failed.returncode == 1 and "did NOT prove restorable" in failed.stderr, failed.stderr
    app = app_status(status(offsite)[1])
    assert any(p.startswith("vault: restore drill of") and "FAILED" in p for p in app["problems"]), app["problems"]
    assert drill_dirs(box, NEW) == "" and drill_dirs(box, SERVER) == ""

    before = (server_state(box), box.clusters(NEW), drill_dirs(box, VAULT))
    on_vault = offsite("verify", "--host", SERVER, "--app", APP, "--repo", "vault", "--on", VAULT)
    assert on_vault.returncode == 1 and "is the repository host of repo vault" in on_vault.stderr
    no_repo = offsite("verify", "--host", SERVER, "--app", APP, "--on", NEW)
    assert no_repo.returncode == 2 and "--on needs --repo" in no_repo.stderr
    assert (server_state(box), box.clusters(NEW), drill_dirs(box, VAULT)) == before

    again = offsite("verify", "--host", SERVER, "--app", APP, "--repo", "vault")
    assert again.returncode == 0, again.stderr
    wait_until(lambda: not app_status(status(offsite)[1])["problems"], 60, "status healthy after a good drill")


def test_a_purged_app_leaves_nothing_in_the_repo_and_its_name_can_be_used_again(box, offsite):
    made = offsite("initcluster", "--host", SERVER, "--app", "gone", "--port", "5436")
    assert made.returncode == 0, made.stderr
    hosted = [f"{HOSTED_REPO}/backup/gone", f"{HOSTED_REPO}/archive/gone", f"{HOSTED_CONF}/conf.d/gone.conf"]
    assert all(box.on(VAULT, "test", "-e", path, check=False).returncode == 0 for path in hosted)

    dropped = offsite("dropcluster", "--host", SERVER, "--app", "gone", "--purge-backups", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert "delete gone's backups and WAL in repo vault" in dropped.stderr
    assert [p for p in hosted if box.on(VAULT, "test", "-e", p, check=False).returncode == 0] == []
    assert box.on(SERVER, "test", "-e", "/var/lib/pgmam/ship/vault/gone", check=False).returncode == 1
    assert vault_info(box)["status"]["code"] == 0  # the app that stays is untouched

    again = offsite("initcluster", "--host", SERVER, "--app", "gone", "--port", "5436")
    assert again.returncode == 0, again.stderr

    def gone_healthy() -> bool:
        (gone,) = [c for c in status(offsite)[1]["hosts"][0]["clusters"] if c["app"] == "gone"]
        return not gone["problems"]

    wait_until(gone_healthy, 60, "the new app of that name shipping to vault")
    out = offsite("dropcluster", "--host", SERVER, "--app", "gone", "--purge-backups", "--yes")
    assert out.returncode == 0, out.stderr


def server_state(box) -> tuple[list[str], str, str]:
    return (
        box.clusters(SERVER),
        box.on(VAULT, "sh", "-c", f"ls -R {HOSTED_CONF} {HOSTED_REPO}/backup").stdout,
        box.on(SERVER, "ls", "-R", "/etc/pgbackrest").stdout,
    )


@pytest.mark.parametrize("passphrase", [None, "not-the-passphrase"])
def test_a_missing_or_wrong_passphrase_is_refused_and_changes_nothing(box, offsite, tmp_path, passphrase):
    config = tmp_path / "config"
    if passphrase:
        config.mkdir(mode=0o700)
        (config / "repo-vault.passphrase").write_text(passphrase + "\n")
    before = server_state(box)
    out = offsite("initcluster", "--host", SERVER, "--app", "blog", "--port", "5433", config_dir=config)
    assert out.returncode == 1
    expected = "is not the one the backups of sbx1" if passphrase else "its passphrase is missing"
    assert expected in out.stderr
    assert server_state(box) == before
    assert not os.path.exists(config / "repo-vault.passphrase") or passphrase


def test_backup_refusals(box, offsite):
    before = server_state(box)
    unknown = offsite("backup", "--host", SERVER, "--app", APP, "--repo", "nosuch")
    assert unknown.returncode == 2 and "unknown repo 'nosuch'" in unknown.stderr
    made = offsite("initcluster", "--host", VAULT, "--app", "lone", "--port", "5440")
    assert made.returncode == 0, made.stderr
    not_kept = offsite("backup", "--host", VAULT, "--app", "lone", "--repo", "vault")
    assert not_kept.returncode == 1 and "sbx2 does not back up to repo vault" in not_kept.stderr
    assert server_state(box) == before


def test_the_passphrase_reaches_the_repo_host_intact_through_a_sudo_that_asks_a_password(box, offsite):
    """The config holding the passphrase travels on stdin; with a password sudo, that password
    comes first on the same stdin, and must never end up in the file."""
    password = box.sandbox.state_dir.joinpath("sudo_password").read_text().strip()
    conf = f"{HOSTED_CONF}/pgbackrest.conf"
    box.on(VAULT, "rm", conf)
    inventory = Path(offsite.inventory)  # type: ignore[attr-defined]
    text = inventory.read_text().replace(
        f'user = "{box.naming.login_user}"', f'user = "{box.naming.sudo_password_user}"'
    )
    with_password = inventory.with_name("hosts-password.toml")
    with_password.write_text(text)
    env = {"PGMAM_CONFIG_DIR": str(offsite.config), "PGMAM_SUDO_PASSWORD": password}  # type: ignore[attr-defined]
    out = run_inv("initcluster", "--host", SERVER, "--app", APP, "--port", str(PORT), inventory=with_password, env=env)
    assert out.returncode == 0, out.stderr
    written = box.on(VAULT, "cat", conf).stdout
    passphrase = (offsite.config / "repo-vault.passphrase").read_text().strip()  # type: ignore[attr-defined]
    assert written.startswith("# managed by pgmam\n") and f"repo1-cipher-pass={passphrase}\n" in written
    assert password not in written
    assert box.on(VAULT, "stat", "-c", "%U:%G %a", conf).stdout.split() == ["root:postgres", "640"]


# -- a lost server --------------------------------------------------------------------------

CHECKSUM = (
    "select count(*) || ':' || coalesce(md5(string_agg(aid || '=' || abalance, ',' order by aid)), '-') "
    "from pgbench_accounts"
)


def checksums(box, server: str) -> dict[str, str]:
    return {app: box.psql(server, port, CHECKSUM) for app, port in ((APP, PORT), (OTHER, OTHER_PORT))}


def pgbench(box, server: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return box.on(server, "runuser", "-u", "postgres", "--", "pgbench", "-p", str(port), *args, "postgres")


def test_recover_refusals_leave_the_new_server_unchanged(box, offsite):
    before = (box.clusters(NEW), box.on(NEW, "ls", "-R", "/etc/pgbackrest", check=False).stdout)
    cases = [
        (("--from", NEW, "--all-apps"), 2, "is the server to recover onto"),
        (("--from", SERVER, "--app", "nosuch"), 1, "repo vault keeps no backup of nosuch from sbx1"),
        (("--from", "sbx9", "--all-apps"), 2, "sbx9 is not in the inventory"),
        (("--from", SERVER, "--app", APP, "--to", "2099-01-01 00:00:00+00"), 1, "is after the newest WAL repo vault"),
    ]
    for args, code, message in cases:
        out = offsite("recover", "--host", NEW, *args, "--yes")
        assert out.returncode == code and message in out.stderr, (args, out.stderr)
    assert (box.clusters(NEW), box.on(NEW, "ls", "-R", "/etc/pgbackrest", check=False).stdout) == before


def test_a_lost_server_is_rebuilt_elsewhere_with_the_data_the_repo_had(box, offsite):
    made = offsite("initcluster", "--host", SERVER, "--app", OTHER, "--port", str(OTHER_PORT))
    assert made.returncode == 0, made.stderr
    for port in (PORT, OTHER_PORT):
        assert pgbench(box, SERVER, port, "-i", "-s", "2", "-q").returncode == 0
        assert pgbench(box, SERVER, port, "-T", "15", "-c", "2").returncode == 0
    # shop goes back a few seconds with a pitr: timeline 2, and no backup of it in vault yet. The
    # recover must follow the history file from a timeline 1 backup.
    moment = box.psql(SERVER, PORT, "select now() - interval '3 seconds'")
    back = offsite("pitr", "--host", SERVER, "--app", APP, "--to", moment, "--yes", timeout=600)
    assert back.returncode == 0, back.stderr
    assert pgbench(box, SERVER, PORT, "-T", "5", "-c", "2").returncode == 0
    assert all(b["archive"]["start"].startswith("00000001") for b in vault_info(box)["backup"])  # all on TL1
    # what the repo has when the server dies: everything up to this switch, shipped
    archived = checksums(box, SERVER)
    for app, port in ((APP, PORT), (OTHER, OTHER_PORT)):
        segment = box.psql(SERVER, port, "select pg_walfile_name(pg_switch_wal())")
        wait_until(
            lambda app=app, segment=segment: vault_info(box, app)["archive"][0]["max"] >= segment,
            120,
            f"{app}'s {segment} on {VAULT}",
        )
    # then more writes that never reach the repo: they are lost with the server
    for port in (PORT, OTHER_PORT):
        box.psql(SERVER, port, "update pgbench_accounts set abalance = abalance + 1 where aid <= 100")
    assert checksums(box, SERVER) != archived
    # the server dies: its link, its processes and its disk
    subprocess.run(["ip", "link", "set", box.naming.host_veth(1), "down"], check=True)
    box.on(
        SERVER, "sh", "-c", "systemctl kill --signal=KILL 'postgresql@*' 'pgmam-ship*'; rm -rf /var/lib/postgresql/15"
    )

    dry = offsite("recover", "--host", NEW, "--from", SERVER, "--all-apps", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert box.clusters(NEW) == []  # a dry run changes nothing
    out = offsite("recover", "--host", NEW, "--from", SERVER, "--all-apps", "--yes", timeout=900)
    assert out.returncode == 0, out.stderr
    assert "2 app(s) of sbx1 recovered on sbx3" in out.stderr
    assert out.stderr.count("restored to   end of the archived WAL") == 2
    assert box.clusters(NEW) == [f"15 {OTHER} {OTHER_PORT} online", f"15 {APP} {PORT} online"]
    assert checksums(box, NEW) == archived
    assert box.psql(NEW, PORT, "select timeline_id from pg_control_checkpoint()") >= "3"  # past TL2, as promoted

    # sbx3 is their home now: archiving off-host under its own place, healthy
    for port in (PORT, OTHER_PORT):
        box.psql(NEW, port, "insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, 1, now())")
    code, payload = run_status(offsite, NEW)
    assert code == 0, [c["problems"] for c in payload["hosts"][0]["clusters"]]
    for cluster in payload["hosts"][0]["clusters"]:
        (repo,) = cluster["offsite"]
        assert repo["backup_count"] == 1 and repo["recovery_window"]["breaks"] == []
    # sbx1's backups are still in the repo, readable
    assert len(vault_info(box, APP)["backup"]) >= 2
