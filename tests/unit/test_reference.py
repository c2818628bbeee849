"""docs/reference/tasks.md is generated from the task definitions; it must not drift from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_task_reference_matches_the_code():
    done = subprocess.run(
        [sys.executable, "scripts/reference.py", "--check"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_task_reference_has_every_task_and_flag():
    from pgmam_remote import cli

    page = (REPO / "docs" / "reference" / "tasks.md").read_text()
    for task in cli.TASKS:
        assert f"\n## {task.name}\n" in page
        for flag in task.help:
            assert f"--{flag.replace('_', '-')}" in page, f"{task.name} --{flag}"
