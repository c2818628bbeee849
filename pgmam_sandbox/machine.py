"""One systemd sandbox server: an overlay on the cached image, booted by systemd-nspawn.

A server's files are an overlayfs upper directory on the read-only image (``pgmam_sandbox.image``), so
servers share the image and each starts in well under a second of disk work. It boots with
systemd as PID 1 in the network namespace the sandbox made for it, inside cgroups of its own
(``pgmam-sandbox/<machine>`` in every writable hierarchy). Everything about a running server is
found through those cgroups, never through remembered pids: a killed nspawn leaves its container
running, and a reboot gives the server new pids.

This module owns booting, rebooting, cutting the power and stopping such a server, and the files
written into it before its first boot. It never prints; failures raise ``SandboxError``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import time
from pathlib import Path

from pgmam_remote.errors import SandboxError

BOOT_SCRIPT = Path(__file__).resolve().parent / "sh" / "boot-server.sh"
CGROUP_BASE = Path("/sys/fs/cgroup")
CGROUP_GROUP = "pgmam-sandbox"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
SHUTDOWN_TIMEOUT_S = 20.0
KILL_TIMEOUT_S = 10.0
BOOTED_TIMEOUT_S = 60.0
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
# systemd and its services take about a dozen inotify instances per server, all counted against
# root; Debian's default limit of 128 stops the 17th server from booting.
INOTIFY_PER_SERVER = 16
INOTIFY_SPARE = 128  # what this machine's own programs use


def ensure_inotify_room(servers: int) -> str | None:
    """Raise the inotify instance limit when it is too low for this many more servers (never lower it).

    Returns what was done, to be said, or None."""
    running = len(machines_with_prefix([""]))
    needed = INOTIFY_SPARE + INOTIFY_PER_SERVER * (running + servers)
    try:
        current = int(INOTIFY_INSTANCES.read_text())
        if current >= needed:
            return None
        INOTIFY_INSTANCES.write_text(f"{needed}\n")
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot raise {INOTIFY_INSTANCES} to {needed} for {servers} servers: {exc}") from exc
    return f"raised fs.inotify.max_user_instances from {current} to {needed} (systemd in every server uses some)"


def cgroup_roots() -> list[Path]:
    """The writable cgroup hierarchies, the cgroup2 one first (its cgroup.kill stops a server)."""
    if (CGROUP_BASE / "cgroup.controllers").exists():
        return [CGROUP_BASE]  # a pure cgroup2 machine
    roots = [CGROUP_BASE / "unified", CGROUP_BASE / "systemd"]  # hybrid: cgroup2 + named v1
    found = [root for root in roots if (root / "cgroup.procs").exists()]
    if not found or found[0] != roots[0]:
        raise SandboxError("the systemd sandbox needs a cgroup2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
    return found


def cgroup_dirs(machine: str) -> list[Path]:
    return [root / CGROUP_GROUP / machine for root in cgroup_roots()]


def machines_with_prefix(prefixes: list[str]) -> list[str]:
    """Sandbox machines that have a cgroup on this machine, found by name (for cleaning up)."""
    try:
        base = cgroup_roots()[0] / CGROUP_GROUP
        names = sorted(entry.name for entry in base.iterdir() if entry.is_dir())
    except (OSError, SandboxError):
        return []
    return [name for name in names if any(name.startswith(prefix) for prefix in prefixes)]


# --------------------------------------------------------------------------- files


def mount_overlay(image: Path, server_dir: Path) -> Path:
    """Mount the server's root: the image below, its own ``upper`` on top. Returns the root."""
    root = server_dir / "root"
    for sub in ("upper", "work", "root"):
        (server_dir / sub).mkdir(exist_ok=True)
    if not is_mounted(root):
        options = f"lowerdir={image},upperdir={server_dir / 'upper'},workdir={server_dir / 'work'}"
        _run(["mount", "-t", "overlay", "overlay", "-o", options, str(root)])
    return root


def unmount(root: Path) -> bool:
    """Unmount a server's root; True when something was mounted there."""
    if not is_mounted(root):
        return False
    result = subprocess.run(["umount", str(root)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # Still busy for a moment after the last process died: detach it, the kernel finishes.
        _run(["umount", "--lazy", str(root)])
    return True


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as fh:
        return any(line.split()[1] == target for line in fh)


def mounts_under(directory: Path) -> list[Path]:
    prefix = str(directory).rstrip("/") + "/"
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh]
    return [Path(p) for p in points if p.startswith(prefix)]


def prepare_root(
    root: Path,
    hostname: str,
    address: str,
    host_key: Path,
    users: tuple[str, str],
    password: str,
    authorized_key: str,
    extra_hosts: tuple[tuple[str, str], ...] = (),
) -> None:
    """Write what makes this server unique, before its first boot.

    Its own hostname, machine-id and host key; the login users (``users[0]`` with passwordless
    sudo, ``users[1]`` whose sudo asks for ``password``), their authorized key, and an sshd that
    lets only them in. ``extra_hosts`` are more (address, name) lines of its /etc/hosts.
    """
    etc = root / "etc"
    _write(etc / "hostname", f"{hostname}\n", 0o644)
    hosts = [("127.0.0.1", "localhost"), ("::1", "localhost"), ("127.0.1.1", hostname), (address, hostname)]
    _write(etc / "hosts", "".join(f"{ip} {name}\n" for ip, name in (*hosts, *extra_hosts)), 0o644)
    _write(etc / "machine-id", secrets.token_hex(16) + "\n", 0o444)
    for suffix, mode in (("", 0o600), (".pub", 0o644)):
        _write(etc / "ssh" / f"ssh_host_ed25519_key{suffix}", Path(f"{host_key}{suffix}").read_text(), mode)
    login, with_password = users
    for user in users:
        _run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "-p", "*", user])
    _run(["chroot", str(root), "chpasswd"], input_text=f"{with_password}:{password}\n")
    sudoers = f"# pgmam sandbox\n{login} ALL=(ALL:ALL) NOPASSWD: ALL\n{with_password} ALL=(ALL:ALL) ALL\n"
    _write(etc / "sudoers.d" / "pgmam-sandbox", sudoers, 0o440)
    for user in users:
        _run(
            ["chroot", str(root), "install", "-d", "-m", "700", "-o", user, "-g", user, f"/home/{user}/.ssh"],
        )
        keys = root / "home" / user / ".ssh" / "authorized_keys"
        _write(keys, authorized_key + "\n", 0o600)
        uid_gid = (root / "home" / user).stat()
        os.chown(keys, uid_gid.st_uid, uid_gid.st_gid)
    # postgres too, as on a real server: pgBackRest reaches a repository host (and back) as postgres,
    # with keys that pgmam installs.
    _write(etc / "ssh" / "sshd_config.d" / "pgmam-users.conf", f"AllowUsers {' '.join(users)} postgres\n", 0o644)


# --------------------------------------------------------------------------- running


def boot(hostname: str, machine: str, server_dir: Path, netns: str) -> subprocess.Popen[bytes]:
    """Start the server (systemd as PID 1) in the background; its console goes to boot.log."""
    root = server_dir / "root"
    if running(machine):
        raise SandboxError(f"sandbox machine {machine} is already running")
    argv = ["sh", str(BOOT_SCRIPT), hostname, machine, str(root), netns, *map(str, cgroup_dirs(machine))]
    with open(server_dir / "boot.log", "ab") as log_file:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )


def leader(machine: str) -> int | None:
    """The host pid of the server's PID 1 (systemd), or None when it is not running."""
    payload = cgroup_dirs(machine)[0] / "payload"
    for group in (payload / "init.scope", payload):
        for pid in _procs(group):
            if _ns_pid(pid) == 1:
                return pid
    return None


def root_of(machine: str) -> Path | None:
    """The root directory a running machine was booted from (read off its nspawn's command line)."""
    for pid in all_pids(machine):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            if arg.startswith(b"--directory="):
                return Path(arg.split(b"=", 1)[1].decode())
    return None


def running(machine: str) -> bool:
    return bool(all_pids(machine))


def all_pids(machine: str) -> list[int]:
    top = cgroup_dirs(machine)[0]
    if not top.is_dir():
        return []
    return [pid for group, _, _ in os.walk(top) for pid in _procs(Path(group))]


def exec_argv(machine: str, argv: list[str]) -> list[str]:
    """argv running ``argv`` as root inside the running server (all of its namespaces)."""
    pid = leader(machine)
    if pid is None:
        raise SandboxError(f"sandbox machine {machine} is not running")
    return ["nsenter", "--target", str(pid), "--all", "--", *argv]


def wait_booted(machine: str, timeout: float = BOOTED_TIMEOUT_S) -> str:
    """Wait until systemd in the server has finished booting; returns its state (running, degraded)."""
    deadline = time.monotonic() + timeout
    state = "not running"
    while time.monotonic() < deadline:
        if leader(machine) is not None:
            result = subprocess.run(
                exec_argv(machine, ["systemctl", "is-system-running"]), capture_output=True, text=True, check=False
            )
            state = result.stdout.strip() or state
            if state in ("running", "degraded"):
                return state
        time.sleep(0.2)
    raise SandboxError(f"sandbox machine {machine} did not finish booting within {timeout:.0f}s (state: {state})")


def shutdown(machine: str, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    """A clean power-off: systemd stops every service in order, then the machine is gone."""
    launcher = _procs(cgroup_dirs(machine)[0])
    _signal(launcher, signal.SIGTERM)  # the boot loop: no boot after this power-off
    pid = leader(machine)
    if pid is not None:
        # SIGRTMIN+4 asks systemd for a power-off, as `systemctl poweroff` does.
        _signal([pid], signal.SIGRTMIN + 4)
    if not _wait_empty(machine, timeout):
        kill(machine)


def kill(machine: str) -> None:
    """Cut the power: every process of the server dies at once, with no chance to clean up."""
    top = cgroup_dirs(machine)[0]
    if (top / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            (top / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while (pids := all_pids(machine)) and time.monotonic() < deadline:
        _signal(pids, signal.SIGKILL)  # kernels without cgroup.kill, and processes forked meanwhile
        time.sleep(0.05)
    if all_pids(machine):
        raise SandboxError(f"sandbox machine {machine}: processes survive SIGKILL: {all_pids(machine)}")


def remove_cgroups(machine: str) -> list[str]:
    """Remove the (empty) cgroup trees and nspawn's propagation dir of a stopped machine."""
    removed = []
    for top in cgroup_dirs(machine):
        if not top.is_dir():
            continue
        for group, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(group)
        removed.append(f"cgroup {top}")
        with contextlib.suppress(OSError):
            top.parent.rmdir()  # the shared pgmam-sandbox group, once no sandbox uses it
    with contextlib.suppress(OSError):
        (PROPAGATE_DIR / machine).rmdir()
    return removed


def reboot(machine: str, timeout: float = SHUTDOWN_TIMEOUT_S + BOOTED_TIMEOUT_S) -> None:
    """A clean reboot, as ``systemctl reboot`` does: services stop in order, nspawn boots it again."""
    old = leader(machine)
    if old is None:
        raise SandboxError(f"sandbox machine {machine} is not running")
    _signal([old], signal.SIGINT)  # systemd's ctrl-alt-del: reboot.target
    deadline = time.monotonic() + timeout
    while leader(machine) in (None, old):
        if time.monotonic() > deadline or not running(machine):
            raise SandboxError(f"sandbox machine {machine} did not come back from a reboot within {timeout:.0f}s")
        time.sleep(0.1)


def power_cut(machine: str, hostname: str, server_dir: Path, netns: str) -> subprocess.Popen[bytes]:
    """Cut the power and boot again: no service stops, and /run and /tmp start empty."""
    _signal(_procs(cgroup_dirs(machine)[0]), signal.SIGKILL)  # the boot loop first: it must not reboot
    kill(machine)
    return boot(hostname, machine, server_dir, netns)


# --------------------------------------------------------------------------- helpers


def _procs(group: Path) -> list[int]:
    try:
        return [int(line) for line in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _ns_pid(pid: int) -> int | None:
    """The pid a process has in its innermost pid namespace."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_empty(machine: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while all_pids(machine):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _run(argv: list[str], input_text: str | None = None) -> None:
    result = subprocess.run(argv, input=input_text, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(
            f"{shlex.join(argv)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
        )
