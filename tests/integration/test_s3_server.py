"""The sandbox's S3-compatible server (pgmam_sandbox/sh/s3-server.sh): a single-node Ceph
(one mon, one in-memory OSD, radosgw on TLS), run in a network namespace of its own here.

What matters: it comes up with a bucket and keys; pgBackRest 2.45 lists that bucket over TLS,
verifying the certificate against the server's own CA, and is refused with a wrong secret key;
`down` stops exactly the daemons `up` started. The off-host S3 repos of the next part are tested
against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import pgmam_sandbox as sandbox

SCRIPT = sandbox.S3_SCRIPT
ADDRESS, PORT = "10.231.77.1", 8443
NETNS = f"pgmam-s3t{os.getpid()}"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def in_netns(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", NETNS, *argv], capture_output=True, text=True, check=check)


@pytest.fixture
def s3(tmp_path):
    """The server, up in a namespace that only this test uses; everything made is removed after."""
    etc = Path("/etc/netns") / NETNS  # `ip netns exec` binds its hosts file over /etc/hosts
    made_parent = not etc.parent.exists()
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        in_netns("ip", "link", "set", "lo", "up")
        in_netns("ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo")
        etc.mkdir(parents=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{ADDRESS} s3.pgmam.test\n")
        state = tmp_path / "s3"
        up = in_netns(str(SCRIPT), "up", str(state), ADDRESS, str(PORT), check=False)
        assert up.returncode == 0, up.stderr
        yield json.loads(up.stdout), state
    finally:
        if (tmp_path / "s3").exists():
            in_netns(str(SCRIPT), "down", str(tmp_path / "s3"), check=False)
        subprocess.run(["ip", "netns", "del", NETNS], check=False)
        shutil.rmtree(etc, ignore_errors=True)
        if made_parent:
            etc.parent.rmdir()


def ceph_pids(state: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"{state}/ceph.conf"], capture_output=True, text=True).stdout
    return out.split()


def repo_ls(info: dict, tmp_path: Path, secret: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text(
        "[global]\nrepo1-type=s3\n"
        f"repo1-s3-endpoint={info['endpoint']}\nrepo1-storage-port={info['port']}\n"
        f"repo1-storage-ca-file={info['ca_file']}\nrepo1-s3-uri-style=path\n"
        f"repo1-s3-bucket={info['bucket']}\nrepo1-s3-region={info['region']}\n"
        f"repo1-s3-key={info['access_key']}\nrepo1-s3-key-secret={secret}\n"
        f"repo1-path=/pgmam\nio-timeout=10\nlog-level-console=warn\nlog-level-file=off\nlock-path={tmp_path}/lock\n"
    )
    return in_netns("pgbackrest", f"--config={conf}", "repo-ls", check=False)


def test_pgbackrest_lists_the_bucket_over_verified_tls_and_down_stops_every_daemon(s3, tmp_path):
    info, state = s3
    assert (info["endpoint"], info["port"], info["bucket"]) == ("s3.pgmam.test", PORT, "pgmam")
    assert in_netns(str(SCRIPT), "status", str(state)).stdout.strip() == "up"
    assert len(ceph_pids(state)) == 3  # mon, osd, radosgw

    listed = repo_ls(info, tmp_path, info["secret_key"])
    assert listed.returncode == 0, listed.stderr
    refused = repo_ls(info, tmp_path, "not-the-secret")
    assert refused.returncode != 0 and "403" in refused.stderr + refused.stdout

    again = in_netns(str(SCRIPT), "up", str(state), ADDRESS, str(PORT))
    assert json.loads(again.stdout)["secret_key"] == info["secret_key"]  # already up: the same server

    in_netns(str(SCRIPT), "down", str(state))
    assert ceph_pids(state) == []
    assert in_netns(str(SCRIPT), "status", str(state), check=False).returncode == 3
