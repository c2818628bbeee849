"""Local sandbox servers for tests, the demo and user rehearsals.

This module owns the N Debian servers a sandbox fakes on this one machine, each in a network
namespace of its own (reached through a veth pair on one bridge) and answering on SSH. There are
two kinds:

- **systemd servers** (the default): Debian 12 booted by systemd-nspawn with systemd as PID 1,
  as production servers run (``pgmam_sandbox.machine``, on the image of ``pgmam_sandbox.image``). Their login
  users, host keys and sudoers live inside them.
- **plain servers** (``systemd=False``): a private mount + UTS namespace around this machine's own
  binaries, whose PostgreSQL/pgBackRest directories, /tmp and /etc/hosts are bind-mounted from
  the state dir, with an sshd of their own and login users made on this machine. Nothing there
  is PID 1, so schedules fall back to cron: this is the lane for servers without systemd.

On request (``s3=True``, systemd servers only) it also runs an S3-compatible server on the same
bridge, in a namespace of its own: a single-node Ceph from ``pgmam_sandbox/sh/s3-server.sh``, known to
the servers as ``s3.pgmam.test`` and to the inventory as repo ``bucket``.

It also owns the client key, known_hosts and the ``hosts.toml`` inventory that the rest of pgmam
reads. ``down()`` removes all of it, including leftovers of a crashed run found by name, but never
a user, file or process it did not create.

Must run as root.  Nothing here prints or exits: progress goes to an optional ``log`` callback and
failures raise ``SandboxError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pgmam_remote.errors import SandboxError

from . import image as sandbox_image
from . import machine as sandbox_machine

Log = Callable[[str], None] | None

REPO_DIR = Path(__file__).resolve().parent.parent
# Outside any checkout: servers must not depend on where (or how privately) the clone lives.
STATE_ROOT = Path("/var/lib/pgmam-sandbox")
DEFAULT_SUBNET = "10.213.0.0/24"
SSH_PORT = 22
SSHD_START_TIMEOUT_S = 10.0
BOOT_TIMEOUT_S = 90.0  # a systemd server's boot, until its sshd answers
TERM_GRACE_S = 5.0
KILL_GRACE_S = 2.0

# Binaries up() relies on, and the Debian packages that provide the ones that may be missing.
REQUIRED_BINARIES = (
    "ip",
    "unshare",
    "nsenter",
    "mount",
    "hostname",
    "sshd",
    "ssh-keygen",
    "sudo",
    "visudo",
    "useradd",
    "userdel",
    "chpasswd",
    "pg_createcluster",
    "pg_ctlcluster",
    "pgbackrest",
    "cron",
)
APT_PACKAGES = ("postgresql", "pgbackrest", "openssh-server", "sudo", "iproute2", "cron")
# systemd servers: booted by nspawn from an image mmdebstrap builds
SYSTEMD_BINARIES = ("systemd-nspawn", "mmdebstrap", "chroot")
SYSTEMD_APT_PACKAGES = ("systemd-container", "mmdebstrap")
# the S3 server: a single-node Ceph (s3-server.sh checks these too)
S3_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "curl", "openssl")
S3_APT_PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "curl", "openssl")
# root's PATH normally has these, but be explicit so a trimmed PATH does not trigger apt-get.
SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
)


@dataclass(frozen=True)
class _Dir:
    """A directory a server gets privately: its path inside the server and how it is owned."""

    path: str
    mode: int
    owner: str
    group: str


# Bind-mounted per server.  Owners and modes mirror a fresh Debian install.
PRIVATE_DIRS = (
    _Dir("/etc/postgresql", 0o755, "postgres", "postgres"),
    _Dir("/var/lib/postgresql", 0o755, "postgres", "postgres"),
    _Dir("/run/postgresql", 0o2775, "postgres", "postgres"),
    _Dir("/var/log/postgresql", 0o1775, "root", "postgres"),
    _Dir("/etc/pgbackrest", 0o755, "root", "root"),
    _Dir("/var/lib/pgbackrest", 0o750, "postgres", "postgres"),
    _Dir("/var/log/pgbackrest", 0o750, "postgres", "postgres"),
    _Dir("/var/spool/pgbackrest", 0o750, "postgres", "postgres"),
    _Dir("/tmp", 0o1777, "root", "root"),
    # pgmam's own server-side state: locks, job journals, restore points, the audit log
    _Dir("/var/lib/pgmam", 0o755, "root", "root"),
    _Dir("/var/log/pgmam", 0o755, "root", "root"),
    # scheduled backups on a server without systemd
    _Dir("/etc/cron.d", 0o755, "root", "root"),
)
HOSTS_FILE = "/etc/hosts"


def state_dir_for(name: str) -> Path:
    """Where a sandbox named ``name`` keeps its files: ``/var/lib/pgmam-sandbox/<name>-<hash>``.

    Never inside the checkout: a clone under /root (mode 700) or /tmp (private inside a plain
    server) must work as well as any other. The hash of the checkout's path keeps two clones'
    sandboxes apart.
    """
    digest = hashlib.sha256(str(REPO_DIR).encode()).hexdigest()[:8]
    return STATE_ROOT / f"{name.lstrip('.')}-{digest}"


DEFAULT_STATE_DIR = state_dir_for(".sandbox")
# The Debian pgbackrest package ships /etc/pgbackrest.conf, which pgbackrest falls back to when
# /etc/pgbackrest/pgbackrest.conf is absent; a private copy keeps servers from sharing it.
LEGACY_PGBACKREST_CONF = "/etc/pgbackrest.conf"
SYSTEMD_RUN_DIR = "/run/systemd"
SSHD_PRIVSEP_DIR = "/run/sshd"
NETNS_DIR = Path("/run/netns")
# `ip netns exec NAME` binds /etc/netns/NAME/hosts over /etc/hosts
ETC_NETNS = Path("/etc/netns")
SUDOERS_DIR = Path("/etc/sudoers.d")

# Files and dirs up() puts in a state dir; down() only deletes a state dir made of these.
STATE_ENTRIES = frozenset(
    {
        "state.json",
        "hosts.toml",
        "id_ed25519",
        "id_ed25519.pub",
        "known_hosts",
        "authorized_keys",
        "sudo_password",
        "servers",
        "s3",
        "s3.env",
    }
)

S3_SCRIPT = Path(__file__).resolve().parent / "sh" / "s3-server.sh"
# The name its certificate carries. pgBackRest 2.45 matches the certificate against a name only, never
# an IP SAN, so the servers reach it by this name, which their /etc/hosts maps to the S3 address.
S3_NAME = "s3.pgmam.test"
S3_PORT = 8443
S3_REPO = "bucket"  # the repo's name in the inventory
S3_KEY_ID_ENV = "PGMAM_SANDBOX_S3_KEY_ID"
S3_SECRET_ENV = "PGMAM_SANDBOX_S3_SECRET"
S3_MARKER = ".s3-server"  # what s3-server.sh leaves in a dir it made


@dataclass(frozen=True)
class SandboxNaming:
    """Every name and address a sandbox claims on the machine.

    The defaults are the sandbox developers use; tests pass another naming so a test run never
    tears down a developer's sandbox (the names are machine-global, so only one sandbox per naming
    can exist).
    """

    netns_prefix: str = "pgmam-sbx"
    link_prefix: str = "pgmsbx"
    subnet: str = DEFAULT_SUBNET
    login_user: str = "pgmam"
    sudo_password_user: str = "pgmampw"

    @property
    def bridge(self) -> str:
        return f"{self.link_prefix}0"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_address(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 1

    @property
    def users(self) -> tuple[str, str]:
        return (self.login_user, self.sudo_password_user)

    @property
    def sudoers_file(self) -> Path:
        # No dot in the name: sudo's @includedir skips files containing one.
        return SUDOERS_DIR / f"{self.login_user}-sandbox"

    def netns(self, index: int) -> str:
        return f"{self.netns_prefix}{index}"

    def host_veth(self, index: int) -> str:
        return f"{self.link_prefix}{index}h"

    def address(self, index: int) -> ipaddress.IPv4Address:
        return self.network.network_address + 10 + index

    # The S3 server's names carry the prefixes, so down() finds them as it finds the servers'.
    @property
    def s3_netns(self) -> str:
        return f"{self.netns_prefix}s3"

    @property
    def s3_veth(self) -> str:
        return f"{self.link_prefix}s3h"

    @property
    def s3_address(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 200  # above any server's (at most 99 of them)


DEFAULT_NAMING = SandboxNaming()


@dataclass(frozen=True)
class SandboxServer:
    """One fake server: its name, address, namespaces (pinned by sshd) and private files."""

    name: str
    address: str
    netns: str
    sshd_pid: int  # plain servers: sshd, which pins the namespaces; 0 on systemd servers
    root: Path
    machine: str = ""  # systemd servers: the nspawn machine (its cgroups are named after it)
    host_veth: str = ""  # the machine's end of its link to the sandbox bridge

    @property
    def systemd(self) -> bool:
        return bool(self.machine)


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox as recorded in ``state_dir/state.json``."""

    state_dir: Path
    inventory: Path
    servers: tuple[SandboxServer, ...]


# --------------------------------------------------------------------------- public API


def up(
    servers: int = 2,
    state_dir: Path | None = None,
    log: Log = None,
    *,
    naming: SandboxNaming = DEFAULT_NAMING,
    systemd: bool = True,
    s3: bool = False,
) -> Sandbox:
    """Create a fresh sandbox of ``servers`` servers, tearing down any previous one first.

    ``systemd`` picks the kind: systemd servers (the default) or plain ones (no systemd, cron).
    ``s3`` also runs the S3 server, once the servers are up: repo ``bucket`` of the inventory, its
    keys in ``state_dir/s3.env`` (and ``s3_env()``).
    """
    if not 1 <= servers <= 99:
        raise SandboxError(f"servers must be between 1 and 99, not {servers}")
    if s3 and not systemd:
        # Only a systemd server's /etc/hosts names the S3 server, and tests of S3 repos run there.
        raise SandboxError("the sandbox's S3 server needs systemd servers: ask for plain servers or for S3, not both")
    if s3 and naming.s3_address >= naming.network.broadcast_address:
        raise SandboxError(f"sandbox subnet {naming.subnet} has no room for the S3 server at .200")
    _require_root()
    state_dir = _resolve_state_dir(state_dir)
    _ensure_packages(log, systemd, s3)
    down(state_dir, log, naming=naming)
    _check_state_dir_usable(state_dir)
    _check_subnet_free(naming)
    try:
        return _build(servers, state_dir, naming, log, systemd, s3)
    except BaseException:
        # Leave nothing half-built behind; the error already carries what went wrong.
        _say(log, "sandbox: up failed, cleaning up")
        down(state_dir, log, naming=naming)
        raise


def down(state_dir: Path | None = None, log: Log = None, *, naming: SandboxNaming | None = None) -> list[str]:
    """Remove everything up() created (and leftovers found by name); return what was removed."""
    _require_root()
    state_dir = _resolve_state_dir(state_dir)
    state = _read_state_tolerant(state_dir)
    namings = _namings_to_clean(state, naming)
    removed: list[str] = []
    problems: list[str] = []
    removed += _stop_s3(namings, state, state_dir, problems, log)
    removed += _stop_machines(namings, state, state_dir, problems, log)
    netns_names = _sandbox_netns(namings, state)
    removed += _kill_netns_processes(netns_names, problems, log)
    for ns in netns_names:
        _remove(removed, problems, f"netns {ns}", ["ip", "netns", "del", ns], log)
    removed += _remove_etc_netns(namings, state, log)
    for link in _sandbox_links(namings, state):
        _remove(removed, problems, f"link {link}", ["ip", "link", "del", link], log)
    for sudoers in {n.sudoers_file for n in namings}:
        if sudoers.exists():
            sudoers.unlink()
            removed.append(f"file {sudoers}")
            _say(log, f"sandbox: removed {sudoers}")
    for user in _sandbox_users(namings, state):
        if _user_exists(user):
            _remove(removed, problems, f"user {user}", ["userdel", "-r", user], log, ok_codes=(0, 6, 12))
    if sandbox_machine.mounts_under(state_dir):
        problems.append(f"{state_dir} still has mounts; left in place")
    else:
        removed += _remove_state_dir(state_dir, state is not None, log)
    if problems:
        raise SandboxError("sandbox down left pieces behind:\n" + "\n".join(problems))
    return removed


def current(state_dir: Path | None = None) -> Sandbox | None:
    """The sandbox recorded in ``state_dir`` (not checked for liveness), or None."""
    state_dir = _resolve_state_dir(state_dir)
    path = state_dir / "state.json"
    if not path.exists():
        return None
    try:
        return _sandbox_from_state(state_dir, json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SandboxError(f"unreadable sandbox state {path}: {exc}") from exc


def s3_env(state_dir: Path | None = None) -> dict[str, str]:
    """The environment the inventory's S3 repo ``bucket`` reads its keys from (``key_id_env``, ``secret_env``)."""
    path = _resolve_state_dir(state_dir) / "s3" / "server.json"
    try:
        return _s3_env_of(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise SandboxError(f"this sandbox runs no S3 server ({path} is missing): `inv sandbox.up --s3`") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SandboxError(f"unreadable S3 server description {path}: {exc}") from exc


def netns_exec_argv(server: SandboxServer, argv: list[str]) -> list[str]:
    """argv running ``argv`` as root inside the server (its namespaces; all of them on systemd servers)."""
    if server.systemd:
        return sandbox_machine.exec_argv(server.machine, argv)
    return ["nsenter", "-t", str(server.sshd_pid), "-n", "-m", "-u", "--", *argv]


def stop_sshd(server: SandboxServer, log: Log = None) -> None:
    """Stop the server's sshd so its port refuses connections (open sessions stay)."""
    if server.systemd:
        _run(netns_exec_argv(server, ["systemctl", "stop", "ssh.service"]))
    elif _pid_in_netns(server.sshd_pid, server.netns):
        os.kill(server.sshd_pid, signal.SIGTERM)
        leftover = _wait_gone([server.sshd_pid], TERM_GRACE_S)
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        _wait_gone(leftover, KILL_GRACE_S)
    _say(log, f"sandbox: sshd of {server.name} stopped")


def start_sshd(server: SandboxServer, log: Log = None) -> SandboxServer:
    """Start the server's sshd again; returns the server with its new ``sshd_pid``.

    The new sshd gets a fresh mount namespace built from the same private directories, so the
    server's files are unchanged; use the returned value for ``netns_exec_argv``.
    """
    if server.systemd:
        _run(netns_exec_argv(server, ["systemctl", "start", "ssh.service"]))
        _wait_for_port(server.address, SSHD_START_TIMEOUT_S, server.root.parent / "boot.log")
        return server
    if _pid_in_netns(server.sshd_pid, server.netns) and _port_open(server.address):
        return server
    proc = _spawn_server(server.root.parent, server.name, server.netns)
    _wait_for_sshd(server.address, server.root.parent, proc)
    restarted = replace(server, sshd_pid=proc.pid)
    _update_state_server(_state_dir_of(server), restarted)
    _say(log, f"sandbox: sshd of {server.name} started (pid {proc.pid})")
    return restarted


def reboot(server: SandboxServer, log: Log = None, *, power_cut: bool = False) -> SandboxServer:
    """Reboot a systemd server and wait until it has booted; ``power_cut`` kills it first instead.

    A power cut kills every process of the server at once (no service stops, no shutdown), then
    boots it again: /run and /tmp start empty, and systemd starts what is enabled, as after a real
    power loss. Files on disk stay as they were written (the page cache is not lost)."""
    if not server.systemd:
        raise SandboxError(f"{server.name} is a plain server: only systemd servers boot")
    server_dir = server.root.parent
    if power_cut:
        sandbox_machine.power_cut(server.machine, server.name, server_dir, server.netns)
    else:
        sandbox_machine.reboot(server.machine)
    _wait_for_port(server.address, BOOT_TIMEOUT_S, server_dir / "boot.log")
    state = sandbox_machine.wait_booted(server.machine)
    _say(log, f"sandbox: {server.name} {'lost power and ' if power_cut else ''}rebooted ({state})")
    return server


def lose(server: SandboxServer, log: Log = None) -> None:
    """Destroy a server as a disaster would, to rehearse `inv recover`: its link to the network is
    cut (nothing more leaves it), then every postgres process is killed and every cluster's data
    dir wiped. It stays lost until `inv sandbox.down`."""
    if not server.host_veth:
        raise SandboxError(f"{server.name}: its link is not recorded (a sandbox made by an older pgmam)")
    _run(["ip", "link", "set", server.host_veth, "down"])
    wipe = "pkill -KILL -u postgres; sleep 1; pkill -KILL -u postgres; rm -rf /var/lib/postgresql/*/*"
    subprocess.run(netns_exec_argv(server, ["sh", "-c", wipe]), check=False, capture_output=True)
    _say(log, f"sandbox: {server.name} is lost: link down, postgres killed, data dirs wiped")


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Plan:
    """What one server will be, before anything exists."""

    index: int
    name: str
    address: str
    netns: str
    host_veth: str
    server_dir: Path
    machine: str

    @property
    def root(self) -> Path:
        return self.server_dir / "root"


def _build(count: int, state_dir: Path, naming: SandboxNaming, log: Log, systemd: bool, s3: bool) -> Sandbox:
    started = time.monotonic()
    plans = [_plan(i, state_dir, naming, systemd) for i in range(1, count + 1)]
    image = sandbox_image.rootfs(log) if systemd else None
    state_dir.mkdir(parents=True, exist_ok=True)
    # StrictModes refuses authorized_keys under a group/world-writable directory.
    state_dir.chmod(0o755)
    # Written first so a crash at any later point can still be cleaned up by down().
    _write_state(state_dir, naming, plans, sshd_pids={})
    if image is not None:
        _build_systemd(image, state_dir, naming, plans, log)
    else:
        _build_plain(state_dir, naming, plans, log)
    s3_info = _start_s3(state_dir, naming, log) if s3 else None
    _write_inventory(state_dir, naming, plans, s3_info)
    kind = "systemd" if systemd else "plain"
    _say(
        log,
        f"sandbox: {count} {kind} server(s) up in {time.monotonic() - started:.1f}s ({state_dir / 'hosts.toml'})",
    )
    sandbox = current(state_dir)
    assert sandbox is not None  # just written above
    return sandbox


def _build_systemd(image: Path, state_dir: Path, naming: SandboxNaming, plans: list[_Plan], log: Log) -> None:
    """Overlay, per-server files, then boot every server at once and wait for their sshd."""
    raised = sandbox_machine.ensure_inotify_room(len(plans))
    if raised:
        _say(log, f"sandbox: {raised}")
    with _keygens(state_dir, plans):
        _create_network(naming, plans, log)
    password = secrets.token_hex(16)
    _write_file(state_dir / "sudo_password", password + "\n", 0o600)
    _write_key_files(state_dir, naming, plans)
    client_key = (state_dir / "id_ed25519.pub").read_text().strip()
    for plan in plans:
        root = sandbox_machine.mount_overlay(image, plan.server_dir)
        host_key = plan.server_dir / "ssh_host_ed25519_key"
        sandbox_machine.prepare_root(
            root,
            plan.name,
            plan.address,
            host_key,
            naming.users,
            password,
            client_key,
            # always: a line costs nothing, and servers of a sandbox without S3 simply find nothing there
            extra_hosts=((str(naming.s3_address), S3_NAME),),
        )
    for plan in plans:
        sandbox_machine.boot(plan.name, plan.machine, plan.server_dir, plan.netns)
    for plan in plans:
        _wait_for_port(plan.address, BOOT_TIMEOUT_S, plan.server_dir / "boot.log")
        sandbox_machine.wait_booted(plan.machine)
    names = ", ".join(p.name for p in plans)
    _say(log, f"sandbox: booted {names} (systemd-nspawn; users {' and '.join(naming.users)} inside)")


def _build_plain(state_dir: Path, naming: SandboxNaming, plans: list[_Plan], log: Log) -> None:
    with _keygens(state_dir, plans):
        _create_users(state_dir, naming, log)
        for plan in plans:
            _prepare_server_files(plan)
        _ensure_real_root_targets()
        _create_network(naming, plans, log)
    _write_key_files(state_dir, naming, plans)
    procs = {plan.name: _spawn_server(plan.server_dir, plan.name, plan.netns) for plan in plans}
    sshd_pids = {name: proc.pid for name, proc in procs.items()}
    _write_state(state_dir, naming, plans, sshd_pids)
    for plan in plans:
        _wait_for_sshd(plan.address, plan.server_dir, procs[plan.name])


def _plan(index: int, state_dir: Path, naming: SandboxNaming, systemd: bool) -> _Plan:
    name = f"sbx{index}"
    return _Plan(
        index=index,
        name=name,
        address=str(naming.address(index)),
        netns=naming.netns(index),
        host_veth=naming.host_veth(index),
        server_dir=state_dir / "servers" / name,
        # unique on the machine, like the netns: nspawn and the cgroups know machines by this name
        machine=naming.netns(index) if systemd else "",
    )


@contextlib.contextmanager
def _keygens(state_dir: Path, plans: list[_Plan]) -> Iterator[None]:
    """The keys are generated while the body runs, and are all there after it. If the body fails,
    every ssh-keygen is waited for first: none may still write into a dir that down() removes."""
    procs = _start_keygens(state_dir, plans)
    try:
        yield
    except BaseException:
        for proc in procs:
            proc.communicate()
        raise
    _finish(procs)


def _start_keygens(state_dir: Path, plans: list[_Plan]) -> list[subprocess.Popen[bytes]]:
    """Generate the client key and every host key concurrently (they are independent)."""
    jobs = [(state_dir / "id_ed25519", "pgmam-sandbox-client")]
    for plan in plans:
        plan.server_dir.mkdir(parents=True)
        jobs.append((plan.server_dir / "ssh_host_ed25519_key", plan.name))
    return [
        subprocess.Popen(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for path, comment in jobs
    ]


def _finish(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SandboxError(f"{shlex.join(map(str, proc.args))} failed: {err.decode().strip()}")


def _create_users(state_dir: Path, naming: SandboxNaming, log: Log) -> None:
    """Create both login users and the sudoers file granting them sudo.

    A user that already exists is someone else's: refuse rather than take it over (and down()
    removes only the users recorded here as created)."""
    taken = [user for user in naming.users if _user_exists(user)]
    if taken:
        raise SandboxError(f"user {', '.join(taken)} already exists on this machine and is not the sandbox's")
    # '*' rather than a locked '!' password: with UsePAM no, sshd refuses locked accounts even
    # for key logins.
    for user in naming.users:
        _run(["useradd", "--create-home", "--shell", "/bin/bash", "-p", "*", user])
        _record_created_user(state_dir, user)
    password = secrets.token_hex(16)
    # Through stdin so the password never shows up in a process list.
    _run(["chpasswd"], input_text=f"{naming.sudo_password_user}:{password}\n")
    _write_file(state_dir / "sudo_password", password + "\n", 0o600)
    _install_sudoers(naming)
    _say(
        log,
        f"sandbox: users {naming.login_user} (sudo without password) and "
        f"{naming.sudo_password_user} (sudo with password) created",
    )


def _install_sudoers(naming: SandboxNaming) -> None:
    text = (
        "# pgmam sandbox: written by pgmam_sandbox up(), removed by down().\n"
        f"{naming.login_user} ALL=(ALL:ALL) NOPASSWD: ALL\n"
        f"{naming.sudo_password_user} ALL=(ALL:ALL) ALL\n"
    )
    target = naming.sudoers_file
    # The temporary name contains a dot, so sudo ignores it until the atomic rename.
    tmp = target.with_name(target.name + ".tmp")
    _write_file(tmp, text, 0o440)
    try:
        _run(["visudo", "-cf", str(tmp)])
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _prepare_server_files(plan: _Plan) -> None:
    """Create the server's private directory tree and its /etc/hosts."""
    for spec in PRIVATE_DIRS:
        path = plan.root / spec.path.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, spec.owner, spec.group)
        path.chmod(spec.mode)  # after chown, which clears setgid
    hosts = f"127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {plan.name}\n{plan.address} {plan.name}\n"
    _write_file(plan.root / HOSTS_FILE.lstrip("/"), hosts, 0o644)
    legacy = Path(LEGACY_PGBACKREST_CONF)
    if legacy.is_file():
        copy = plan.root / LEGACY_PGBACKREST_CONF.lstrip("/")
        shutil.copy2(legacy, copy)
        st = legacy.stat()
        os.chown(copy, st.st_uid, st.st_gid)
    (plan.server_dir / "empty").mkdir(mode=0o755, exist_ok=True)


def _ensure_real_root_targets() -> None:
    """Bind targets must exist on the real root, or the bind fails and writes leak to it."""
    for spec in PRIVATE_DIRS:
        Path(spec.path).mkdir(parents=True, exist_ok=True)
    Path(SSHD_PRIVSEP_DIR).mkdir(mode=0o755, exist_ok=True)


def _create_network(naming: SandboxNaming, plans: list[_Plan], log: Log) -> None:
    bridge = naming.bridge
    prefix = naming.network.prefixlen
    _run(["ip", "link", "add", bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"{naming.bridge_address}/{prefix}", "dev", bridge])
    _run(["ip", "link", "set", bridge, "up"])
    for plan in plans:
        _add_netns(naming, plan.netns, plan.host_veth, plan.address)
    _say(log, f"sandbox: bridge {bridge} {naming.bridge_address}/{prefix}, {len(plans)} namespace(s)")


def _add_netns(naming: SandboxNaming, netns: str, host_veth: str, address: str) -> None:
    """A network namespace whose eth0 has ``address`` on the sandbox bridge, through ``host_veth``."""
    prefix = naming.network.prefixlen
    _run(["ip", "netns", "add", netns])
    # The peer is created directly inside the namespace under its final name.
    _run(["ip", "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    _run(["ip", "link", "set", host_veth, "master", naming.bridge, "up"])
    _run(["ip", "-n", netns, "addr", "add", f"{address}/{prefix}", "dev", "eth0"])
    _run(["ip", "-n", netns, "link", "set", "eth0", "up"])
    _run(["ip", "-n", netns, "link", "set", "lo", "up"])


def _start_s3(state_dir: Path, naming: SandboxNaming, log: Log) -> dict:
    """Run the S3 server in a namespace of its own on the bridge; return what s3-server.sh printed."""
    started = time.monotonic()
    netns, address, s3_dir = naming.s3_netns, str(naming.s3_address), state_dir / "s3"
    # Recorded first, as the servers are: down() cleans up after a failure at any later point.
    entry = {"netns": netns, "link": naming.s3_veth, "dir": str(s3_dir), "address": address}
    _record_s3(state_dir, {**entry, "made_etc_netns": not ETC_NETNS.exists()})  # down() removes only what up() made
    _add_netns(naming, netns, naming.s3_veth, address)
    # Inside its own namespace the name resolves too, as in s3-server.sh's own test.
    etc = ETC_NETNS / netns
    etc.mkdir(parents=True, exist_ok=True)
    _write_file(etc / "hosts", f"127.0.0.1 localhost\n{address} {S3_NAME}\n", 0o644)
    result = _run(["ip", "netns", "exec", netns, "bash", str(S3_SCRIPT), "up", str(s3_dir), address, str(S3_PORT)])
    try:
        info = json.loads(result.stdout)
        env = _s3_env_of(info)
    except (ValueError, KeyError, TypeError) as exc:
        raise SandboxError(f"{S3_SCRIPT.name} up did not describe the server it started: {exc}") from exc
    _write_file(s3_dir / "server.json", json.dumps(info, indent=2) + "\n", 0o600)
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
    _write_file(state_dir / "s3.env", exports, 0o600)
    _say(
        log,
        f"sandbox: S3 server (Ceph radosgw) up in {time.monotonic() - started:.1f}s: https://{S3_NAME}:{S3_PORT} "
        f"({address}), repo {S3_REPO!r} in the inventory, its keys in {state_dir / 's3.env'}",
    )
    return info


def _s3_env_of(info: dict) -> dict[str, str]:
    return {S3_KEY_ID_ENV: str(info["access_key"]), S3_SECRET_ENV: str(info["secret_key"])}


def _write_key_files(state_dir: Path, naming: SandboxNaming, plans: list[_Plan]) -> None:
    client_pub = (state_dir / "id_ed25519.pub").read_text().strip()
    _write_file(state_dir / "authorized_keys", client_pub + "\n", 0o644)
    lines = []
    for plan in plans:
        key_type, key = (plan.server_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"{plan.address} {key_type} {key}\n")
    _write_file(state_dir / "known_hosts", "".join(lines), 0o644)
    for plan in plans:
        if not plan.machine:  # a systemd server runs its own sshd with its own config
            _write_file(plan.server_dir / "sshd_config", _sshd_config(state_dir, naming, plan), 0o644)


def _sshd_config(state_dir: Path, naming: SandboxNaming, plan: _Plan) -> str:
    return "\n".join(
        [
            f"# sshd of sandbox server {plan.name}, written by pgmam_sandbox",
            f"ListenAddress {plan.address}",
            f"Port {SSH_PORT}",
            f"HostKey {plan.server_dir / 'ssh_host_ed25519_key'}",
            f"PidFile {plan.server_dir / 'sshd.pid'}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {state_dir / 'authorized_keys'}",
            "PermitRootLogin no",
            f"AllowUsers {' '.join(naming.users)}",
            "LogLevel INFO",
            "PrintMotd no",
            "X11Forwarding no",
            # Fabric's put/get use SFTP.
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


# Makes sshd a child subreaper (kept across exec), so daemons that outlive their parent
# (postgres started by pg_ctl, detached pgmam jobs) are reaped inside the server, as init
# reaps them on a real one; this machine's PID 1 does not reap orphans.
_SUBREAPER = (
    "import ctypes, os, sys; ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _outside_python() -> str:
    """An interpreter sshd can exec inside the server, where /tmp (and so a venv under it) is private."""
    real = os.path.realpath(sys.executable)
    if not any(Path(real).is_relative_to(spec.path) for spec in PRIVATE_DIRS):
        return real
    return shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"


def _spawn_server(server_dir: Path, name: str, netns: str) -> subprocess.Popen[bytes]:
    """Start the server's process tree: private mounts, hostname, then sshd in the foreground.

    ``ip netns exec`` itself creates a mount namespace; ``unshare`` makes a private one of our
    own (plus UTS) so the binds and hostname stay inside this server.  The shell execs sshd, so
    the returned process's pid is sshd's and pins the namespaces for ``nsenter -t``.
    """
    root = server_dir / "root"
    binds = [(root / spec.path.lstrip("/"), spec.path) for spec in PRIVATE_DIRS]
    binds.append((root / HOSTS_FILE.lstrip("/"), HOSTS_FILE))
    if (root / LEGACY_PGBACKREST_CONF.lstrip("/")).exists():
        binds.append((root / LEGACY_PGBACKREST_CONF.lstrip("/"), LEGACY_PGBACKREST_CONF))
    # Otherwise pg_ctlcluster would hand clusters to the host's systemd.
    if Path(SYSTEMD_RUN_DIR, "system").exists():
        binds.append((server_dir / "empty", SYSTEMD_RUN_DIR))
    script = "; ".join(
        [
            "set -e",
            *(shlex.join(["mount", "--bind", str(src), dst]) for src, dst in binds),
            shlex.join(["hostname", name]),
            shlex.join(
                [
                    "exec",
                    _outside_python(),
                    "-c",
                    _SUBREAPER,
                    "/usr/sbin/sshd",
                    "-D",
                    "-e",
                    "-f",
                    str(server_dir / "sshd_config"),
                ]
            ),
        ]
    )
    argv = [
        "ip",
        "netns",
        "exec",
        netns,
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
    ]
    with open(server_dir / "sshd.log", "ab") as log_file:
        return subprocess.Popen(
            argv,
            cwd=server_dir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_port(address: str, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(address):
        if time.monotonic() > deadline:
            raise SandboxError(f"{address}: no sshd after {timeout:.0f}s:\n{_tail(log_file)}")
        time.sleep(0.05)


def _wait_for_sshd(address: str, server_dir: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SSHD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _port_open(address):
            return
        if proc.poll() is not None:
            raise SandboxError(f"sshd for {address} exited with {proc.returncode}:\n{_tail(server_dir / 'sshd.log')}")
        time.sleep(0.02)
    raise SandboxError(
        f"sshd for {address} not accepting connections after "
        f"{SSHD_START_TIMEOUT_S:.0f}s:\n{_tail(server_dir / 'sshd.log')}"
    )


def _port_open(address: str) -> bool:
    try:
        with socket.create_connection((address, SSH_PORT), timeout=0.5):
            return True
    except OSError:
        return False


def _write_inventory(state_dir: Path, naming: SandboxNaming, plans: list[_Plan], s3: dict | None = None) -> None:
    lines = [
        "# pgmam sandbox inventory, written by `inv sandbox.up`; removed by `inv sandbox.down`.",
        "[defaults]",
        f"user = {_toml_str(naming.login_user)}",
        f"port = {SSH_PORT}",
        f"identity_file = {_toml_str(str(state_dir / 'id_ed25519'))}",
        f"known_hosts = {_toml_str(str(state_dir / 'known_hosts'))}",
        'ssh_config = ""',
        "connect_timeout = 5",
        "",
    ]
    for plan in plans:
        lines += [f"[hosts.{plan.name}]", f"address = {_toml_str(plan.address)}", ""]
    members = ", ".join(_toml_str(plan.name) for plan in plans)
    lines += ["[groups]", f"sandbox = [{members}]", ""]
    if s3 is not None:
        # No host uses it unless told to (repos = [...]): that is for users and tests to decide.
        lines += [
            f"# The sandbox's S3 server; its keys: source {_toml_str(str(state_dir / 's3.env'))}",
            f"[repos.{S3_REPO}]",
            'type = "s3"',
            f"endpoint = {_toml_str(s3['endpoint'])}",
            f"port = {int(s3['port'])}",
            f"bucket = {_toml_str(s3['bucket'])}",
            f"region = {_toml_str(s3['region'])}",
            f"uri_style = {_toml_str(s3['uri_style'])}",
            f"ca_file = {_toml_str(s3['ca_file'])}",
            f"key_id_env = {_toml_str(S3_KEY_ID_ENV)}",
            f"secret_env = {_toml_str(S3_SECRET_ENV)}",
            "",
        ]
    _write_file(state_dir / "hosts.toml", "\n".join(lines), 0o644)


def _toml_str(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(value)


# --------------------------------------------------------------------------- state file


def _write_state(state_dir: Path, naming: SandboxNaming, plans: list[_Plan], sshd_pids: dict[str, int]) -> None:
    state = {
        "version": 1,
        "naming": asdict(naming),
        "naming_users": list(naming.users),
        "bridge": naming.bridge,
        "sudoers_file": str(naming.sudoers_file),
        "servers": [
            {
                "name": p.name,
                "address": p.address,
                "netns": p.netns,
                "host_veth": p.host_veth,
                "sshd_pid": sshd_pids.get(p.name, 0),
                "root": str(p.root),
                "machine": p.machine,
            }
            for p in plans
        ],
        # kept across rewrites: down() removes exactly these users
        "created_users": (_read_state_tolerant(state_dir) or {}).get("created_users", []),
    }
    _write_json(state_dir / "state.json", state)


def _record_created_user(state_dir: Path, user: str) -> None:
    path = state_dir / "state.json"
    state = json.loads(path.read_text())
    state["created_users"].append(user)
    _write_json(path, state)


def _record_s3(state_dir: Path, entry: dict) -> None:
    path = state_dir / "state.json"
    state = json.loads(path.read_text())
    state["s3"] = entry
    _write_json(path, state)


def _update_state_server(state_dir: Path, server: SandboxServer) -> None:
    path = state_dir / "state.json"
    state = json.loads(path.read_text())
    for entry in state["servers"]:
        if entry["name"] == server.name:
            entry["sshd_pid"] = server.sshd_pid
    _write_json(path, state)


def _write_json(path: Path, data: dict) -> None:
    _write_file(path, json.dumps(data, indent=2) + "\n", 0o644)


def _read_state_tolerant(state_dir: Path) -> dict | None:
    """state.json as a dict, or None when missing or damaged (down() then cleans by name)."""
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _sandbox_from_state(state_dir: Path, state: dict) -> Sandbox:
    servers = tuple(
        SandboxServer(
            name=s["name"],
            address=s["address"],
            netns=s["netns"],
            sshd_pid=int(s["sshd_pid"]),
            root=Path(s["root"]),
            machine=s.get("machine", ""),
            host_veth=s.get("host_veth", ""),
        )
        for s in state["servers"]
    )
    return Sandbox(state_dir=state_dir, inventory=state_dir / "hosts.toml", servers=servers)


def _state_dir_of(server: SandboxServer) -> Path:
    return server.root.parent.parent.parent  # <state_dir>/servers/<name>/root


# --------------------------------------------------------------------------- tearing down


def _namings_to_clean(state: dict | None, naming: SandboxNaming | None) -> list[SandboxNaming]:
    namings: list[SandboxNaming] = []
    if state is not None:
        with contextlib.suppress(KeyError, TypeError):  # damaged state: clean by defaults
            namings.append(SandboxNaming(**state["naming"]))
    fallback = naming or (namings[0] if namings else DEFAULT_NAMING)
    if fallback not in namings:
        namings.append(fallback)
    return namings


def _state_servers(state: dict | None) -> list[dict]:
    servers = state.get("servers") if state else None
    return [s for s in servers if isinstance(s, dict)] if isinstance(servers, list) else []


def _state_s3(state: dict | None) -> dict:
    entry = state.get("s3") if state else None
    return entry if isinstance(entry, dict) else {}


def _sandbox_netns(namings: list[SandboxNaming], state: dict | None) -> list[str]:
    existing = sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []
    recorded = {s.get("netns") for s in _state_servers(state)} | {_state_s3(state).get("netns")}
    return [ns for ns in existing if ns in recorded or any(ns.startswith(n.netns_prefix) for n in namings)]


def _sandbox_links(namings: list[SandboxNaming], state: dict | None) -> list[str]:
    result = _run(["ip", "-j", "link", "show"])
    names = [link["ifname"] for link in json.loads(result.stdout or "[]")]
    recorded = {s.get("host_veth") for s in _state_servers(state)} | {_state_s3(state).get("link")}
    if state:
        recorded.add(state.get("bridge"))
    return [name for name in names if name in recorded or any(name.startswith(n.link_prefix) for n in namings)]


def _sandbox_users(namings: list[SandboxNaming], state: dict | None) -> list[str]:
    """Only the users up() recorded as created: a same-named user of someone else's stays."""
    if not state:
        return []
    # state.json of a sandbox made before users were recorded: that version made both, always
    created = state.get("created_users", state.get("naming_users", []))
    return [user for user in created if isinstance(user, str)]


def _stop_s3(
    namings: list[SandboxNaming], state: dict | None, state_dir: Path, problems: list[str], log: Log
) -> list[str]:
    """Stop the S3 server's daemons by their pid files (the kill by namespace that follows is the fallback)."""
    entry = _state_s3(state)
    s3_dir = Path(entry.get("dir") or state_dir / "s3")
    if not (s3_dir / S3_MARKER).exists():
        return []
    argv = ["bash", str(S3_SCRIPT), "down", str(s3_dir)]
    netns = entry.get("netns") or namings[0].s3_netns
    if (NETNS_DIR / netns).exists():
        argv = ["ip", "netns", "exec", netns, *argv]
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        problems.append(f"S3 server in {s3_dir}: {shlex.join(argv)}: {result.stderr.strip()}")
        return []
    stopped = [line.split(": ", 1)[-1] for line in result.stderr.splitlines() if ": stopped " in line]
    if stopped:
        _say(log, f"sandbox: S3 server: {', '.join(stopped)}")
    return [f"S3 daemon {line.removeprefix('stopped ')}" for line in stopped]


def _remove_etc_netns(namings: list[SandboxNaming], state: dict | None, log: Log) -> list[str]:
    """The S3 namespace's hosts file, and /etc/netns itself when up() made it and nothing else uses it."""
    entry = _state_s3(state)
    removed = []
    for netns in dict.fromkeys(filter(None, [entry.get("netns"), *(n.s3_netns for n in namings)])):
        etc = ETC_NETNS / netns
        hosts = etc / "hosts"
        if hosts.exists():
            hosts.unlink()
            removed.append(f"file {hosts}")
        with contextlib.suppress(OSError):  # absent, or holding more than up() put there: left alone
            etc.rmdir()
            removed.append(f"dir {etc}")
            _say(log, f"sandbox: removed {etc}")
    if entry.get("made_etc_netns"):
        with contextlib.suppress(OSError):  # another namespace's files are there by now
            ETC_NETNS.rmdir()
            removed.append(f"dir {ETC_NETNS}")
    return removed


def _stop_machines(
    namings: list[SandboxNaming], state: dict | None, state_dir: Path, problems: list[str], log: Log
) -> list[str]:
    """Power off the systemd servers (recorded, or found by name), unmount their roots, drop their cgroups."""
    recorded = [s["machine"] for s in _state_servers(state) if s.get("machine")]
    found = sandbox_machine.machines_with_prefix([n.netns_prefix for n in namings])
    removed = []
    for machine in dict.fromkeys(recorded + found):
        try:
            if sandbox_machine.running(machine):
                root = sandbox_machine.root_of(machine)
                sandbox_machine.shutdown(machine)
                removed.append(f"machine {machine}")
                _say(log, f"sandbox: stopped machine {machine}")
                # found by name, it may be another state dir's (a sandbox of the same names)
                if root is not None and sandbox_machine.unmount(root):
                    removed.append(f"mount {root}")
            removed += sandbox_machine.remove_cgroups(machine)
        except (OSError, SandboxError) as exc:
            problems.append(f"machine {machine}: {exc}")
    for mount in sorted(sandbox_machine.mounts_under(state_dir / "servers"), reverse=True):
        try:
            sandbox_machine.unmount(mount)
            removed.append(f"mount {mount}")
        except SandboxError as exc:
            problems.append(f"mount {mount}: {exc}")
    return removed


def _kill_netns_processes(netns_names: list[str], problems: list[str], log: Log) -> list[str]:
    """SIGTERM every process in the namespaces, SIGKILL what is left after a grace period."""
    pids = _pids_in_netns(netns_names)
    if not pids:
        return []
    described = [f"process {pid} ({_comm(pid)})" for pid in pids]
    _signal_all(pids, signal.SIGTERM)
    leftover = _wait_gone(pids, TERM_GRACE_S)
    if leftover:
        _say(log, f"sandbox: {len(leftover)} process(es) ignored SIGTERM, killing")
        _signal_all(leftover, signal.SIGKILL)
        leftover = _wait_gone(leftover, KILL_GRACE_S)
    if leftover:
        problems.append(f"processes would not die: {leftover}")
    _say(log, f"sandbox: stopped {len(pids)} process(es) in {', '.join(netns_names)}")
    return described


def _pids_in_netns(netns_names: list[str]) -> list[int]:
    """Like ``ip netns pids`` for several namespaces in one pass over /proc."""
    wanted = set()
    for ns in netns_names:
        try:
            st = os.stat(NETNS_DIR / ns)
        except OSError:
            continue
        wanted.add((st.st_dev, st.st_ino))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone meanwhile, or a zombie
        if (st.st_dev, st.st_ino) in wanted:
            pids.append(int(entry))
    return pids


def _pid_in_netns(pid: int, netns: str) -> bool:
    return pid > 0 and pid in _pids_in_netns([netns])


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs any more; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if _running(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if _running(pid)]
    return alive


def _running(pid: int) -> bool:
    """True unless the process is gone or a zombie (reaped here when it is our child)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state != b"Z":
        return True
    # Reap it if it is our child; otherwise its parent (possibly PID 1) has to.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _remove(
    removed: list[str], problems: list[str], what: str, argv: list[str], log: Log, ok_codes: tuple[int, ...] = (0,)
) -> None:
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    if result.returncode in ok_codes:
        removed.append(what)
        _say(log, f"sandbox: removed {what}")
    elif "Cannot find device" in result.stderr or "No such file" in result.stderr:
        pass  # already gone (e.g. a veth that vanished with its namespace)
    else:
        problems.append(f"{what}: {shlex.join(argv)}: {result.stderr.strip()}")


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _remove_state_dir(state_dir: Path, had_state: bool, log: Log) -> list[str]:
    if not state_dir.exists():
        return []
    entries = set(os.listdir(state_dir))
    # Never rmtree a directory that is not recognisably a sandbox state dir.
    if not had_state and not entries <= STATE_ENTRIES:
        _say(log, f"sandbox: left {state_dir} alone (not a sandbox state dir)")
        return []
    shutil.rmtree(state_dir)
    _say(log, f"sandbox: removed {state_dir}")
    return [f"dir {state_dir}"]


# --------------------------------------------------------------------------- checks and helpers


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (namespaces, users, sudoers)")


def _resolve_state_dir(state_dir: Path | None) -> Path:
    return (state_dir or DEFAULT_STATE_DIR).resolve()


def _check_state_dir_usable(state_dir: Path) -> None:
    if state_dir.exists() and os.listdir(state_dir):
        raise SandboxError(f"{state_dir} exists and is not an empty sandbox state dir")
    for bound in (spec.path for spec in PRIVATE_DIRS):
        if state_dir.is_relative_to(bound):
            # Inside a server that directory is replaced, so sshd would not find its files.
            raise SandboxError(f"state dir {state_dir} must not be under {bound}")


def _ensure_packages(log: Log, systemd: bool, s3: bool = False) -> None:
    required = REQUIRED_BINARIES + (SYSTEMD_BINARIES if systemd else ()) + (S3_BINARIES if s3 else ())
    missing = [b for b in required if shutil.which(b, path=SEARCH_PATH) is None]
    if not missing:
        return
    packages = APT_PACKAGES + (SYSTEMD_APT_PACKAGES if systemd else ())
    _say(log, f"sandbox: missing {', '.join(missing)}; installing {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], env=env)
    _run(["apt-get", "install", "-y", *packages], env=env)
    if s3:
        # the daemons are all s3-server.sh runs, as `make deps` installs them
        _run(["apt-get", "install", "-y", "--no-install-recommends", *S3_APT_PACKAGES], env=env)
    still = [b for b in required if shutil.which(b, path=SEARCH_PATH) is None]
    if still:
        raise SandboxError(f"still missing after apt-get install: {', '.join(still)}")


def _check_subnet_free(naming: SandboxNaming) -> None:
    """Refuse a subnet that overlaps any address or route on the machine we do not own."""
    subnet = naming.network
    ours = {naming.bridge}
    addrs = json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    for link in addrs:
        for info in link.get("addr_info", []):
            net = ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            if link.get("ifname") not in ours and net.overlaps(subnet):
                raise SandboxError(f"sandbox subnet {subnet} overlaps address {net} on {link.get('ifname')}")
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for route in routes:
        dst = route.get("dst", "default")
        if dst == "default" or route.get("dev") in ours:
            continue
        net = ipaddress.IPv4Network(dst, strict=False)
        if net.overlaps(subnet):
            raise SandboxError(f"sandbox subnet {subnet} overlaps route {dst} via {route.get('dev')}")


def _run(
    argv: list[str], input_text: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(argv, check=False, input=input_text, capture_output=True, text=True, env=env)
    except OSError as exc:
        raise SandboxError(f"{shlex.join(argv)}: {exc}") from exc
    if result.returncode != 0:
        raise SandboxError(
            f"{shlex.join(argv)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
        )
    return result


def _write_file(path: Path, text: str, mode: int) -> None:
    """Write ``text`` with ``mode`` from the start (secrets are never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _say(log: Log, message: str) -> None:
    if log is not None:
        log(message)
