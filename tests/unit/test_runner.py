"""runner.run: the one sequence every mutating task goes through (no server: a recording operation)."""

from __future__ import annotations

import io

import pytest

from pgmam_remote import runner
from pgmam_remote.console import Console
from pgmam_remote.errors import Refusal


class Recorded:
    """An operation that records what the runner asked of it."""

    def __init__(self, confirmations: list[runner.Confirmation]) -> None:
        self.asked = confirmations
        self.calls: list[str] = []

    def __enter__(self) -> Recorded:
        self.calls.append("open")
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append("close")

    def prepare(self, *, dry_run: bool) -> None:
        self.calls.append(f"prepare dry_run={dry_run}")

    def render(self) -> list[str]:
        return ["drop shop on sbx1:", "   1. drop cluster 15/shop"]

    def confirmations(self) -> list[runner.Confirmation]:
        return self.asked

    def run(self, console: Console) -> runner.Report:
        self.calls.append("run")
        return runner.Report(["shop dropped on sbx1"], ["kept: 3 backups"], ["then nothing"])


def console() -> tuple[Console, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Console(stdout=out, stderr=err), out, err


TWO = [
    runner.Confirmation(("Drop shop: stop the cluster and delete its data directory.",), "shop"),
    runner.Confirmation(("Second confirmation: every backup of shop will be deleted.",), "purge shop"),
]


def test_a_dry_run_prints_the_plan_on_stdout_and_runs_nothing():
    op, (con, out, _) = Recorded(TWO), console()
    runner.run(op, con, dry_run=True)
    assert op.calls == ["open", "prepare dry_run=True", "close"]
    assert out.getvalue().splitlines() == op.render()


def test_every_confirmation_is_asked_in_order_then_it_runs_and_reports(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    op, (con, _, err) = Recorded(TWO), console()
    prompts: list[str] = []
    answers = iter(["shop", "purge shop"])

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    runner.run(op, con, ask=ask)
    assert prompts == ["Type 'shop' to proceed: ", "Type 'purge shop' to proceed: "]
    assert op.calls == ["open", "prepare dry_run=False", "run", "close"]
    text = err.getvalue()
    assert text.index("Second confirmation") < text.index("✓ shop dropped on sbx1")
    assert "  kept: 3 backups" in text and "  then nothing" in text


def test_a_wrong_answer_to_the_second_confirmation_runs_nothing(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    op, (con, _, _) = Recorded(TWO), console()
    answers = iter(["shop", "shop"])
    with pytest.raises(Refusal, match="not confirmed; nothing was changed"):
        runner.run(op, con, ask=lambda _: next(answers))
    assert "run" not in op.calls and op.calls[-1] == "close"


def test_no_terminal_and_no_yes_refuses_before_anything_runs(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    op, (con, _, _) = Recorded(TWO), console()
    with pytest.raises(Refusal, match="no terminal") as refused:
        runner.run(op, con, ask=lambda _: pytest.fail("asked without a terminal"))
    assert refused.value.hint == "re-run with --yes to confirm"
    assert "run" not in op.calls


def test_yes_skips_the_questions_but_still_shows_what_will_happen(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    op, (con, _, err) = Recorded(TWO), console()
    runner.run(op, con, yes=True, ask=lambda _: pytest.fail("asked despite --yes"))
    assert "run" in op.calls
    assert "Second confirmation: every backup of shop will be deleted." in err.getvalue()


def test_an_operation_that_loses_nothing_runs_without_a_question(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    op, (con, _, _) = Recorded([]), console()
    runner.run(op, con)
    assert "run" in op.calls
