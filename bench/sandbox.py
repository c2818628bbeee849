"""Figures for the systemd sandbox: image build, boot-to-SSH, memory per idle server, reboots.

Brings up its own sandboxes (own names and subnet, so it never touches a rehearsal or test
sandbox), prints the figures and tears them down. Needs root.
Usage: python3 bench/sandbox.py [SERVERS ...]   (default: 1 8 32)
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pgmam_sandbox as sandbox  # noqa: E402
from pgmam_sandbox import image as sandbox_image  # noqa: E402
from pgmam_sandbox import machine as sandbox_machine  # noqa: E402

NAMING = sandbox.SandboxNaming(
    netns_prefix="pgmam-bs",
    link_prefix="pgmbs",
    subnet="10.213.5.0/24",
    login_user="pgmambs",
    sudo_password_user="pgmambspw",
)
STATE_DIR = sandbox.state_dir_for(".sandbox-bench-boot")
SETTLE_S = 10  # let boot-time services finish before reading memory


def pss_bytes(machine: str) -> int:
    """Proportional set size of every process of a server (shared pages split among their users)."""
    total = 0
    for pid in sandbox_machine.all_pids(machine):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def main(counts: list[int]) -> None:
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}")
    cached = (sandbox_image.CACHE_DIR / f"debian12-{sandbox_image.image_key()}").exists()
    started = time.monotonic()
    image = sandbox_image.rootfs()
    if cached:
        print(f"image: cached ({image})")
    else:
        print(f"image: built in {time.monotonic() - started:.1f} s ({image})")
    for count in counts:
        sandbox.down(STATE_DIR, naming=NAMING)
        started = time.monotonic()
        box = sandbox.up(count, STATE_DIR, naming=NAMING)
        booted = time.monotonic() - started
        try:
            time.sleep(SETTLE_S)
            memory = [pss_bytes(server.machine) for server in box.servers]
            print(
                f"{count:>2} server(s): up (booted, sshd answering) in {booted:.1f} s; "
                f"idle memory per server {sum(memory) / len(memory) / 2**20:.0f} MiB PSS "
                f"(max {max(memory) / 2**20:.0f} MiB)"
            )
            if count == counts[0]:
                for power_cut in (False, True):
                    started = time.monotonic()
                    sandbox.reboot(box.servers[0], power_cut=power_cut)
                    what = "power cut to booted" if power_cut else "clean reboot to booted"
                    print(f"   {what}: {time.monotonic() - started:.1f} s")
        finally:
            sandbox.down(STATE_DIR, naming=NAMING)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 8, 32])
