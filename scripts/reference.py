"""Write docs/reference/tasks.md from the task definitions: every task's --help, as `pgmam` prints it.

python scripts/reference.py          # (re)write the page
python scripts/reference.py --check  # exit 1 when the page differs from the code (make test runs this)
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from invoke import Program

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgmam_remote import cli  # noqa: E402

PAGE = REPO / "docs" / "reference" / "tasks.md"
HEADER = """# Every task and flag

Generated from the task definitions by `python scripts/reference.py`; `make test` fails when this
page and the code differ. Each section is what `pgmam TASK --help` prints (`inv TASK --help` in the
checkout prints the same, with `inv` in its first line). Exit statuses: [exit-codes.md](exit-codes.md).

The sandbox's tasks (`inv sandbox.up`, `sandbox.down`, `sandbox.reboot`, `sandbox.lose`) exist only
in the checkout: see [the sandbox guide](../sandbox.md).
"""


def task_help(program: Program, name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        program.run(["pgmam", name, "--help"], exit=False)
    return out.getvalue().strip("\n")


def page() -> str:
    program = Program(namespace=cli.collection(), name="pgmam", binary="pgmam", version="")
    names = sorted(program.namespace.task_names)
    index = " · ".join(f"[{name}](#{name})" for name in names)
    sections = [f"## {name}\n\n```\n{task_help(program, name)}\n```\n" for name in names]
    return "\n".join([HEADER, index + "\n", *sections])


def main(argv: list[str]) -> int:
    text = page()
    if argv == ["--check"]:
        if PAGE.exists() and PAGE.read_text() == text:
            return 0
        print(f"{PAGE.relative_to(REPO)} differs from the task definitions: run `python scripts/reference.py`")
        return 1
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
