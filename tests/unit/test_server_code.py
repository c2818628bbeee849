"""The server code as shipped: every script documented, executable and used; the bundle the
server unpacks holds exactly these files; --dry-run shows scripts by name."""

import base64
import gzip
import hashlib
import io
import os
import re
import tarfile
from pathlib import Path

import pytest

from pgmam_remote import server_code
from pgmam_remote.ops import restore, verify
from pgmam_remote.ops.restore import Paths

PACKAGE = Path(server_code.__file__).parent


def test_every_step_script_is_documented_executable_and_used():
    python = "".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    shell = "".join(server_code.text(name) for name in server_code.FILES if name.endswith(".sh"))
    for name in server_code.FILES:
        if not name.startswith("steps/"):
            continue
        text = server_code.text(name)
        assert text.startswith("#!/bin/sh\n# Usage: "), name
        assert os.access(server_code.SERVER_DIR / name, os.X_OK), name
        step = name.removeprefix("steps/").removesuffix(".sh")
        used = re.search(rf'step\(\s*"{step}"', python) or f"/{step}.sh" in shell
        assert used, f"{name} is used nowhere"


def test_the_bundle_holds_every_file_and_its_manifest_names_the_version():
    raw = gzip.decompress(base64.b64decode(server_code.BUNDLE))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert files.pop("MANIFEST").decode() == server_code.MANIFEST
    assert files == server_code.FILES
    assert hashlib.sha256(server_code.MANIFEST.encode()).hexdigest()[:16] == server_code.VERSION
    assert server_code._bundle() == server_code.BUNDLE  # the same files give the same bytes


def test_a_step_names_its_script_and_takes_its_inputs_as_arguments():
    evil = "shop'; rm -rf / #"
    command = server_code.step("move", f"/x/{evil}", "/y")
    assert command.argv == (f"{server_code.CODE_DIR}/steps/move.sh", f"/x/{evil}", "/y")
    with pytest.raises(ValueError, match=r"no server script steps/nope\.sh"):
        server_code.step("nope")


def test_dry_run_shows_scripts_by_name_and_texts_by_their_size():
    paths = Paths("shop", "/var/lib/postgresql/15/shop", "20261202T000000Z")
    restoring = server_code.step("restore-staging", "shop", paths.staging, "20261202-000000F", paths.run, 25432, "/c")
    assert server_code.display(restoring) == (
        "steps/restore-staging.sh shop /var/lib/postgresql/15/staging-shop-20261202T000000Z 20261202-000000F "
        "/var/lib/pgmam/run/shop 25432 /c"
    )
    write = server_code.step("write-file", "/etc/x.conf", "root:root", "0644", "a\nb\nc\n")
    assert server_code.display(write) == "steps/write-file.sh /etc/x.conf root:root 0644 <3 lines>"
    assert re.fullmatch(r"[0-9a-f]{16}", server_code.VERSION)


def test_the_scheduled_runner_agrees_with_the_planners():
    """scheduled-run.sh repeats two things the Python side decides: the slots of a job template
    and the room a drill needs (as `inv verify` checks it)."""
    runner = server_code.text("scheduled-run.sh")
    for slot in (verify.STAMP_SLOT, verify.BACKUP_SLOT, verify.PORT_SLOT):
        assert f"s/{slot}/" in runner
    room = f"* {int(restore.SPACE_MARGIN * 100)} / 100 + {restore.SPACE_SLACK_BYTES})"
    assert room in runner
