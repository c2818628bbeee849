"""The Debian 12 root filesystem that sandbox servers boot: built once by mmdebstrap, then cached.

Every systemd sandbox server is an overlay on this one read-only tree, so building it is the only
slow part of the first ``sandbox.up`` (about a minute); later ones reuse it. The cache lives
outside the checkout (``/var/cache/pgmam-sandbox``) and is keyed by a hash of everything that
shapes the image, so a change to the package list or to the customize hook builds a new one.

Packages come from the machine's own apt sources when it runs Debian 12, so a local mirror or
proxy set up for apt is used as is; elsewhere mmdebstrap picks Debian's default mirror.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from pgmam_remote.errors import SandboxError

CACHE_DIR = Path("/var/cache/pgmam-sandbox")
SUITE = "bookworm"
# What a stock Debian 12 database server has, plus the tools pgmam expects there.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "sudo",
    "cron",
    "iproute2",
    "locales",
    "procps",
    "util-linux",
    "postgresql-common",
    "postgresql-15",
    "postgresql-client-15",
    "pgbackrest",
    # as on most servers; the tests reach the sandbox's S3 server with it
    "curl",
    # as on Debian's standard and cloud images; pgmam's watchdog runs with it
    "python3",
)
CUSTOMIZE = Path(__file__).resolve().parent / "sh" / "customize-image.sh"
FORMAT = "1"  # bump when the layout of the cache changes
HOST_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
HOST_APT_CONF = Path("/etc/apt/apt.conf.d")
BUILD_TIMEOUT_S = 1200


def image_key() -> str:
    """A short hash of everything that decides the image's contents."""
    digest = hashlib.sha256()
    for part in (FORMAT, SUITE, " ".join(PACKAGES), CUSTOMIZE.read_text()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:12]


def rootfs(log=None) -> Path:
    """The cached image's root directory, built first when missing."""
    target = CACHE_DIR / f"debian12-{image_key()}"
    if (target / "etc" / "os-release").exists():
        return target
    _build(target, log)
    _prune_others(target)
    return target


def _build(target: Path, log) -> None:
    if shutil.which("mmdebstrap") is None or shutil.which("systemd-nspawn") is None:
        raise SandboxError(
            "the systemd sandbox needs mmdebstrap and systemd-nspawn: apt-get install mmdebstrap systemd-container"
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        "--format=directory",
        f"--include={','.join(PACKAGES)}",
        f'--customize-hook=sh {shlex.quote(str(CUSTOMIZE))} "$1"',
        *_host_apt_options(),
        SUITE,
        str(partial),
        *_host_sources(),
    ]
    if log:
        log(f"sandbox: building the Debian 12 server image with mmdebstrap (once; cached in {CACHE_DIR})")
    started = time.monotonic()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise SandboxError(f"mmdebstrap did not finish within {BUILD_TIMEOUT_S}s") from exc
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise SandboxError(f"building the sandbox image failed ({result.returncode}):\n{tail}")
    os.replace(partial, target)
    if log:
        log(f"sandbox: server image built in {time.monotonic() - started:.0f}s ({target})")


def _host_sources() -> list[str]:
    """This machine's apt sources when it runs the same Debian release; else mmdebstrap's default."""
    try:
        os_release = Path("/etc/os-release").read_text()
    except OSError:
        return []
    if "VERSION_CODENAME=bookworm" not in os_release or "ID=debian" not in os_release:
        return []
    return [str(path) for path in HOST_SOURCES if path.is_file() and _has_entries(path)][:1]


def _host_apt_options() -> list[str]:
    """The machine's apt settings (proxy, mirror quirks) apply to the build too, on the same release."""
    if not _host_sources() or not HOST_APT_CONF.is_dir():
        return []
    return [f"--aptopt={path}" for path in sorted(HOST_APT_CONF.iterdir()) if path.is_file()]


def _has_entries(path: Path) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in path.read_text().splitlines())


def _prune_others(keep: Path) -> None:
    """Older images (another package list) are dead weight of several hundred MB each, unless a
    running sandbox still boots from one (it is the lower layer of that server's overlay)."""
    with open("/proc/self/mounts") as fh:
        in_use = fh.read()
    for other in CACHE_DIR.glob("debian12-*"):
        if other != keep and other.is_dir() and f"lowerdir={other}," not in in_use:
            shutil.rmtree(other, ignore_errors=True)
