"""The docs' output samples come from scripts/samples.py's sandbox run, never from pasting."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("samples", REPO / "scripts" / "samples.py")
assert spec and spec.loader
samples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(samples)


def test_every_sample_block_in_the_docs_is_its_kept_sample():
    done = subprocess.run(
        [sys.executable, "scripts/samples.py", "--check"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_kept_sample_is_shown_somewhere():
    markers = [samples.MARKER.match(line) for doc in samples.DOCS for line in doc.read_text().splitlines()]
    shown = {name for m in markers if m for name in m.group(1).split()}
    assert set(samples.kept()) <= shown


def test_a_block_edited_by_hand_is_put_back_and_an_excerpt_keeps_head_and_tail():
    kept = {"demo": "$ inv demo\none\ntwo\nthree\nfour\n"}
    doc = "Intro\n<!-- sample: demo head=2 tail=1 -->\n```\npasted by hand\n```\nafter\n"
    assert (
        samples.render(doc, kept)
        == "Intro\n<!-- sample: demo head=2 tail=1 -->\n```\n$ inv demo\none\n...\nfour\n```\nafter\n"
    )
    whole = "<!-- sample: demo -->\n```\nold\n```\n"
    assert samples.render(whole, kept) == "<!-- sample: demo -->\n```\n" + kept["demo"] + "```\n"
    two = "<!-- sample: demo demo -->\n```\n```\n"
    assert samples.render(two, kept) == "<!-- sample: demo demo -->\n```\n" + 2 * kept["demo"] + "```\n"
