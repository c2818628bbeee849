"""The sandbox for real: namespaces, sshd, sudo and PostgreSQL isolation, then a clean teardown.

Needs root.  Uses its own naming (namespaces, links, subnet, users) and a state dir under the
repo, so it never touches a developer's sandbox brought up with the defaults.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import pgmam_sandbox as sandbox
from pgmam_sandbox import Sandbox, SandboxError, SandboxNaming, SandboxServer
from pgmam_sandbox import machine as sandbox_machine

REPO = Path(__file__).resolve().parents[2]
TEST_NAMING = SandboxNaming(
    netns_prefix="pgmamt-sbx",
    link_prefix="pgmtsbx",
    subnet="10.213.1.0/24",
    login_user="pgmamt",
    sudo_password_user="pgmamtpw",
)
LOGIN = TEST_NAMING.login_user
PW_USER = TEST_NAMING.sudo_password_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")


@pytest.fixture(scope="module", params=["systemd", "plain"])
def box(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """Both kinds of server, one after the other: systemd-booted machines and plain namespaces."""
    # Only one sandbox per naming can exist: clear what a crashed earlier run left behind.
    parent = sandbox.state_dir_for(".sandbox-test").parent
    for stale in parent.glob("*sandbox-test-*"):
        sandbox.down(stale, naming=TEST_NAMING)
    state_dir = sandbox.state_dir_for(f".sandbox-test-{secrets.token_hex(4)}")
    created = sandbox.up(2, state_dir, naming=TEST_NAMING, systemd=request.param == "systemd")
    try:
        yield created
    finally:
        sandbox.down(state_dir, naming=TEST_NAMING)


def ssh(
    box: Sandbox, server: SandboxServer, command: str, user: str = LOGIN, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(box.state_dir / "id_ed25519"),
        "-o",
        f"UserKnownHostsFile={box.state_dir / 'known_hosts'}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=5",
        f"{user}@{server.address}",
        command,
    ]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def by_name(box: Sandbox, name: str) -> SandboxServer:
    return next(server for server in box.servers if server.name == name)


def test_inventory_and_state_files(box: Sandbox) -> None:
    inventory = tomllib.loads(box.inventory.read_text())
    assert inventory["defaults"] == {
        "user": LOGIN,
        "port": 22,
        "identity_file": str(box.state_dir / "id_ed25519"),
        "known_hosts": str(box.state_dir / "known_hosts"),
        "ssh_config": "",
        "connect_timeout": 5,
    }
    assert inventory["hosts"] == {"sbx1": {"address": "10.213.1.11"}, "sbx2": {"address": "10.213.1.12"}}
    assert inventory["groups"] == {"sandbox": ["sbx1", "sbx2"]}
    assert sandbox.current(box.state_dir) == box
    assert (box.state_dir / "sudo_password").stat().st_mode & 0o777 == 0o600
    assert (box.state_dir / "authorized_keys").stat().st_mode & 0o777 == 0o644
    assert len((box.state_dir / "known_hosts").read_text().splitlines()) == 2
    # nothing a server needs lives in the checkout (a clone under /root or /tmp must work)
    assert not box.state_dir.is_relative_to(REPO)
    if box.servers[0].systemd:
        # users and sudoers live inside the servers; this machine gets none
        assert not TEST_NAMING.sudoers_file.exists()
        for user in (LOGIN, PW_USER):
            with pytest.raises(KeyError):
                pwd.getpwnam(user)
        mode = inside(box, "sbx1", "stat", "-c", "%a %U", "/etc/sudoers.d/pgmam-sandbox")
        assert mode == "440 root"
    else:
        assert TEST_NAMING.sudoers_file.stat().st_mode & 0o777 == 0o440


def inside(box: Sandbox, name: str, *argv: str) -> str:
    argv_in = sandbox.netns_exec_argv(by_name(box, name), list(argv))
    return subprocess.run(argv_in, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


@pytest.mark.parametrize("name", ["sbx1", "sbx2"])
def test_key_login_with_strict_host_key_and_sudo(box: Sandbox, name: str) -> None:
    result = ssh(box, by_name(box, name), "sudo -n true && hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_clusters_are_private_to_their_server(box: Sandbox) -> None:
    sbx1, sbx2 = by_name(box, "sbx1"), by_name(box, "sbx2")
    created = ssh(box, sbx1, "sudo -n pg_createcluster 15 iso -p 5440 --start")
    assert created.returncode == 0, created.stderr
    query = ssh(box, sbx1, "sudo -n -u postgres psql -XAtc 'select 1' -p 5440")
    assert query.returncode == 0, query.stderr
    assert query.stdout.strip() == "1"
    assert "iso" in ssh(box, sbx1, "pg_lsclusters -h").stdout
    on_sbx2 = ssh(box, sbx2, "pg_lsclusters -h")
    assert on_sbx2.returncode == 0, on_sbx2.stderr
    assert "iso" not in on_sbx2.stdout
    assert not Path("/etc/postgresql/15/iso").exists()
    assert not Path("/var/lib/postgresql/15/iso").exists()


def test_password_user_needs_its_password_for_sudo(box: Sandbox) -> None:
    sbx1 = by_name(box, "sbx1")
    refused = ssh(box, sbx1, "sudo -n true", user=PW_USER)
    assert refused.returncode != 0
    assert "password is required" in refused.stderr
    password = (box.state_dir / "sudo_password").read_text().strip()
    allowed = ssh(box, sbx1, "sudo -S -p '' true", user=PW_USER, stdin=password + "\n")
    assert allowed.returncode == 0, allowed.stderr


def test_netns_exec_argv_runs_inside_the_server(box: Sandbox) -> None:
    sbx2 = by_name(box, "sbx2")
    argv = sandbox.netns_exec_argv(sbx2, ["sh", "-c", "hostname; ip -j -4 addr show eth0"])
    result = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
    hostname, addresses = result.stdout.split("\n", 1)
    assert hostname == "sbx2"
    assert json.loads(addresses)[0]["addr_info"][0]["local"] == sbx2.address


def test_stop_and_start_sshd(box: Sandbox) -> None:
    sbx2 = by_name(box, "sbx2")
    sandbox.stop_sshd(sbx2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((sbx2.address, 22), timeout=5).close()
    restarted = sandbox.start_sshd(sbx2)
    if not sbx2.systemd:  # a plain server's sshd pins its namespaces: a new one is a new server process
        assert restarted.sshd_pid != sbx2.sshd_pid
    assert by_name(sandbox.current(box.state_dir), "sbx2") == restarted
    result = ssh(box, restarted, "sudo -n true && hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sbx2"


def test_only_systemd_servers_reboot(box: Sandbox) -> None:
    sbx1 = by_name(box, "sbx1")
    if sbx1.systemd:
        pytest.skip("rebooting a systemd server: test_systemd.py and test_crash.py")
    before = _netns_pids(sbx1.netns)
    with pytest.raises(SandboxError, match="sbx1 is a plain server: only systemd servers boot"):
        sandbox.reboot(sbx1, power_cut=True)
    assert _netns_pids(sbx1.netns) == before  # nothing was killed


def test_reboot_of_an_unknown_server_is_refused_as_bad_usage() -> None:
    # whether or not a rehearsal sandbox is up, it has no server named nope
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "sandbox.reboot", "--host", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no sandbox server 'nope'" in out.stderr


def one_off_naming(letter: str, subnet: str) -> SandboxNaming:
    """Names of a sandbox a single test tries to make (and that must never exist for long)."""
    return SandboxNaming(
        netns_prefix=f"pgmam{letter}-sbx",
        link_prefix=f"pgm{letter}sbx",
        subnet=subnet,
        login_user=f"pgmam{letter}",
        sudo_password_user=f"pgmam{letter}pw",
    )


def test_overlapping_subnet_is_refused() -> None:
    naming = one_off_naming("x", "127.213.0.0/24")  # every Linux machine has 127.0.0.0/8 on lo
    state_dir = sandbox.state_dir_for(f".sandbox-test-{secrets.token_hex(4)}")
    with pytest.raises(SandboxError, match="overlaps"):
        sandbox.up(1, state_dir, naming=naming)
    assert not state_dir.exists()


def _process_identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time) of a live, non-zombie process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # This machine's PID 1 does not reap orphans, so dead daemons may linger as zombies.
    return None if fields[0] == "Z" else (pid, fields[19])


def _netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    return [int(pid) for pid in out.split()]


def test_down_removes_everything(box: Sandbox) -> None:
    """Runs last: tears the module's sandbox down and checks that nothing is left."""
    before = {pid: _process_identity(pid) for server in box.servers for pid in _netns_pids(server.netns)}
    comms = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in before}
    assert {"sshd", "postgres"} <= comms

    removed = sandbox.down(box.state_dir)

    assert any(item.startswith("machine" if box.servers[0].systemd else "process") for item in removed)
    assert not [pid for pid, ident in before.items() if ident is not None and _process_identity(pid) == ident]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert TEST_NAMING.netns_prefix not in netns
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert TEST_NAMING.link_prefix not in links
    for user in (LOGIN, PW_USER):
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
    assert not TEST_NAMING.sudoers_file.exists()
    assert not box.state_dir.exists()
    assert sandbox.current(box.state_dir) is None
    assert sandbox.down(box.state_dir, naming=TEST_NAMING) == []
    for server in box.servers:
        if server.systemd:
            assert not any(d.exists() for d in sandbox_machine.cgroup_dirs(server.machine))
    assert not sandbox_machine.mounts_under(box.state_dir.parent / box.state_dir.name)


def test_an_existing_user_of_the_same_name_is_refused_and_kept() -> None:
    """A plain sandbox makes users on this machine: never one that is someone else's, never deleting it."""
    naming = one_off_naming("u", "10.213.2.0/24")
    subprocess.run(["useradd", "--create-home", naming.login_user], check=True)  # someone else's user
    home = Path(pwd.getpwnam(naming.login_user).pw_dir)
    (home / "precious").write_text("mine\n")
    state_dir = sandbox.state_dir_for(f".sandbox-test-{secrets.token_hex(4)}")
    try:
        with pytest.raises(SandboxError, match="pgmamu already exists"):
            sandbox.up(1, state_dir, naming=naming, systemd=False)
        sandbox.down(state_dir, naming=naming)
        assert (home / "precious").read_text() == "mine\n"
        with pytest.raises(KeyError):
            pwd.getpwnam(naming.sudo_password_user)
        assert not naming.sudoers_file.exists()
        assert not state_dir.exists()
    finally:
        subprocess.run(["userdel", "-r", naming.login_user], check=False, capture_output=True)
