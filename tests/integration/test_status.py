"""status over real SSH: every cluster, JSON contract, unreachable rows, host keys, sudo passwords."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

import pgmam_sandbox as sandbox


@pytest.fixture(scope="module")
def apps(box, inv):
    """Two apps on sbx1 and one on sbx2 (created once for this module)."""
    for host, app, port in (("sbx1", "alpha", 5501), ("sbx1", "beta", 5502), ("sbx2", "gamma", 5501)):
        out = inv("initcluster", "--host", host, "--app", app, "--port", str(port))
        assert out.returncode == 0, out.stderr
    return box


def inventory_variant(box, tmp_path: Path, extra: str = "", **defaults: str) -> Path:
    """A copy of the sandbox inventory with [defaults] overrides and extra tables."""
    text = box.inventory.read_text()
    for key, value in defaults.items():
        line = f"{key} = {json.dumps(value)}"
        text, found = re.subn(rf"^{key} = .*$", line, text, count=1, flags=re.M)
        if not found:
            text = text.replace("[defaults]\n", f"[defaults]\n{line}\n", 1)
    path = tmp_path / "hosts.toml"
    path.write_text(text + extra)
    return path


def test_status_json_lists_every_cluster_and_exits_0_when_healthy(apps, inv):
    out = inv("status", "--all-hosts", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert {c["app"] for c in hosts["sbx1"]["clusters"]} >= {"alpha", "beta"}
    assert {c["app"] for c in hosts["sbx2"]["clusters"]} >= {"gamma"}
    alpha = next(c for c in hosts["sbx1"]["clusters"] if c["app"] == "alpha")
    assert alpha["status"] == "online" and alpha["in_recovery"] is False and alpha["port"] == 5501
    assert alpha["version"] == 15 and alpha["timeline"] == 1 and alpha["size_bytes"] > 0
    assert alpha["last_backup"]["type"] == "full" and alpha["last_backup"]["stop"].startswith("20")
    assert alpha["archiving"]["ok"] is True and alpha["recovery_window"]["start"]
    for host in doc["hosts"]:
        assert host["reachable"] is True and host["error"] is None
        assert host["remote_commands"] <= 2  # budget: one connection, at most two commands
        assert host["disk_free_bytes"] > 0


def test_status_table_by_group_and_host(apps, inv):
    out = inv("status", "--group", "sandbox")
    assert out.returncode == 0, out.stderr
    assert "alpha" in out.stdout and "gamma" in out.stdout
    one = inv("status", "--host", "sbx2")
    assert "gamma" in one.stdout and "alpha" not in one.stdout


def test_unreachable_and_refusing_servers_are_rows_not_crashes(apps, inv, tmp_path):
    # an address on the sandbox's own bridge where nobody answers
    ghost = apps.naming.network.network_address + 99
    extra = f'\n[hosts.ghost]\naddress = "{ghost}"\nconnect_timeout = 2\n'
    path = inventory_variant(apps, tmp_path, extra)
    sandbox.stop_sshd(apps.server("sbx2"))
    try:
        out = inv("status", "--all-hosts", "--json", inventory=path)
    finally:
        sandbox.start_sshd(apps.server("sbx2"))
        apps.sandbox = sandbox.current(apps.sandbox.state_dir)  # sshd has a new pid
    assert out.returncode == 1
    hosts = {h["host"]: h for h in json.loads(out.stdout)["hosts"]}
    assert hosts["sbx1"]["reachable"] is True and hosts["sbx1"]["clusters"]
    assert hosts["sbx2"]["reachable"] is False and "cannot connect" in hosts["sbx2"]["error"]
    assert hosts["ghost"]["reachable"] is False and hosts["ghost"]["error"]
    table = inv("status", "--all-hosts", inventory=path)
    assert table.returncode == 1 and "ghost" in table.stdout


def test_archiving_failure_turns_status_red(apps, inv):
    archive = "/var/lib/pgbackrest/archive/beta"
    apps.on("sbx1", "chmod", "000", archive)
    try:
        apps.psql("sbx1", 5502, "create table t(x int); insert into t values (1); select pg_switch_wal()")
        for _ in range(100):
            if int(apps.psql("sbx1", 5502, "select failed_count from pg_stat_archiver")) > 0:
                break
            time.sleep(0.2)
        out = inv("status", "--host", "sbx1", "--json")
    finally:
        apps.on("sbx1", "chmod", "750", archive)
    assert out.returncode == 1
    beta = next(c for c in json.loads(out.stdout)["hosts"][0]["clusters"] if c["app"] == "beta")
    assert beta["archiving"]["ok"] is False
    assert any("WAL archiving failing" in p for p in beta["problems"])


def test_changed_host_key_is_refused(apps, inv, tmp_path):
    known = tmp_path / "known_hosts"
    lines = apps.sandbox.state_dir.joinpath("known_hosts").read_text().splitlines()
    # sbx1's entry now carries sbx2's key: exactly what a man in the middle looks like
    key_of = {line.split()[0]: " ".join(line.split()[1:]) for line in lines}
    sbx1, sbx2 = apps.server("sbx1").address, apps.server("sbx2").address
    known.write_text(f"{sbx1} {key_of[sbx2]}\n{sbx2} {key_of[sbx2]}\n")
    path = inventory_variant(apps, tmp_path, known_hosts=str(known))
    before = apps.clusters("sbx1")
    out = inv("initcluster", "--host", "sbx1", "--app", "mitm", "--port", "5599", inventory=path)
    assert out.returncode == 1
    assert "does not match" in out.stderr and "ssh-keygen -R" in out.stderr
    assert apps.clusters("sbx1") == before

    known.write_text("")
    unknown = inv("status", "--host", "sbx1", "--json", inventory=path)
    assert unknown.returncode == 1
    assert "unknown SSH host key" in json.loads(unknown.stdout)["hosts"][0]["error"]


def test_sudo_with_password(apps, inv, tmp_path):
    password = apps.sandbox.state_dir.joinpath("sudo_password").read_text().strip()
    path = inventory_variant(apps, tmp_path, user=apps.naming.sudo_password_user)
    good = inv("status", "--host", "sbx1", "--json", inventory=path, env={"PGMAM_SUDO_PASSWORD": password})
    assert good.returncode == 0, good.stdout
    assert json.loads(good.stdout)["hosts"][0]["remote_commands"] == 2  # the -n try, then with the password

    wrong = inv("status", "--host", "sbx1", "--json", inventory=path, env={"PGMAM_SUDO_PASSWORD": "wrong"}, timeout=60)
    assert wrong.returncode == 1
    assert "sudo rejected the password" in json.loads(wrong.stdout)["hosts"][0]["error"]

    missing = inv("initcluster", "--host", "sbx1", "--app", "nopw", "--port", "5598", inventory=path)
    assert missing.returncode == 1 and "sudo needs a password" in missing.stderr
