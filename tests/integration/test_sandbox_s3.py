"""The sandbox's S3 server (`sandbox.up(..., s3=True)`): a server reaches it by name, over TLS
verified against the server's own CA, and `sandbox.down` leaves no Ceph daemon, namespace or
/etc/netns entry behind.

The inventory's repo `bucket` is only checked as text here: loading it is the inventory's business.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pgmam_sandbox as sandbox

from .conftest import NAMING, STATE_DIR, Box

SERVERS = 1
S3 = True


def ceph_pids(s3_dir: Path) -> list[str]:
    # every daemon of this sandbox's Ceph runs with -c <s3_dir>/ceph.conf; another run's is elsewhere
    return subprocess.run(["pgrep", "-f", f"{s3_dir}/ceph.conf"], capture_output=True, text=True).stdout.split()


def test_a_server_reaches_s3_by_name_over_verified_tls(box: Box) -> None:
    state_dir = box.sandbox.state_dir
    info = json.loads((state_dir / "s3" / "server.json").read_text())
    assert (state_dir / "s3" / "server.json").stat().st_mode & 0o777 == 0o600
    assert (state_dir / "s3.env").stat().st_mode & 0o777 == 0o600
    assert sandbox.s3_env(state_dir) == {
        "PGMAM_SANDBOX_S3_KEY_ID": info["access_key"],
        "PGMAM_SANDBOX_S3_SECRET": info["secret_key"],
    }
    inventory = box.inventory.read_text()
    assert '[repos.bucket]\ntype = "s3"\nendpoint = "s3.pgmam.test"\nport = 8443\n' in inventory
    assert f"ca_file = {json.dumps(info['ca_file'])}" in inventory
    assert "repos = [" not in inventory  # no host uses it unless told to

    shutil.copy(info["ca_file"], box.server("sbx1").root / "root" / "s3-ca.crt")
    answered = box.on(
        "sbx1",
        *("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}", "--max-time", "10"),
        *("--cacert", "/root/s3-ca.crt", "https://s3.pgmam.test:8443/"),
        check=False,
    )
    assert answered.returncode == 0, answered.stderr
    code, verified = answered.stdout.split()
    assert code in ("200", "403") and verified == "0"  # anonymous: an empty listing, or refused


def test_down_stops_every_ceph_daemon_and_removes_the_namespace(box: Box) -> None:
    s3_dir = box.sandbox.state_dir / "s3"
    assert len(ceph_pids(s3_dir)) == 3  # mon, osd, radosgw

    removed = sandbox.down(STATE_DIR, naming=NAMING)

    assert any(item.startswith("S3 daemon") for item in removed), removed
    assert ceph_pids(s3_dir) == []
    assert NAMING.s3_netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", NAMING.s3_veth], capture_output=True).returncode != 0
    assert not (Path("/etc/netns") / NAMING.s3_netns).exists()
    assert sandbox.down(STATE_DIR, naming=NAMING) == []  # nothing left to remove
