"""The cost of finding holes in the archived WAL, the probe's `wal-gaps` section, by archive size.

Builds a pgBackRest-shaped archive of empty segment files in a temp dir (one app, 256 segments to
a directory, two segments missing in the middle), runs the probe's own `wal-gaps` section over it
(its archive path pointed at the temp dir), checks that it reports exactly that hole, and prints
the wall and CPU time. Needs no root and no server.
Usage: python3 bench/wal_gaps.py [SEGMENTS ...]   (default: 1000 20000 100000)
"""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pgmam_remote import server_code  # noqa: E402

RUNS = 5


def section(archive: Path) -> str:
    probe = server_code.text("probe.sh")
    found = re.search(r"^section wal-gaps\n(.*?)^section locks\n", probe, re.MULTILINE | re.DOTALL)
    assert found, "probe.sh has no wal-gaps section"
    return found.group(1).replace("/var/lib/pgbackrest/archive", str(archive))


def build(archive: Path, segments: int) -> tuple[str, str]:
    """The archive; returns the names of the segments on either side of the hole."""
    hole = {segments // 2, segments // 2 + 1}
    for n in range(segments):
        if n in hole:
            continue
        name = f"00000001{n // 256:08X}{n % 256:08X}"
        folder = archive / "shop" / "15-1" / name[:16]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}-{'0' * 40}.zst").touch()
    before, after = min(hole) - 1, max(hole) + 1
    return tuple(f"00000001{n // 256:08X}{n % 256:08X}" for n in (before, after))  # type: ignore[return-value]


def measure(segments: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp)
        before, after = build(archive, segments)
        script = section(archive)
        walls, cpus = [], []
        for _ in range(RUNS):
            start_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.monotonic()
            out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
            walls.append(time.monotonic() - start)
            end_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(end_cpu.ru_utime - start_cpu.ru_utime + end_cpu.ru_stime - start_cpu.ru_stime)
            assert out.split()[:4] == ["shop", "15-1", before, after], out
        walls.sort()
        cpus.sort()
        print(
            f"{segments:>7} segments ({segments * 16 / 1024:.0f} GiB of WAL): "
            f"median {walls[RUNS // 2]:.3f} s wall, {cpus[RUNS // 2]:.3f} s CPU; the hole found"
        )


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}")
    for segments in [int(a) for a in sys.argv[1:]] or [1000, 20000, 100000]:
        measure(segments)


if __name__ == "__main__":
    main()
