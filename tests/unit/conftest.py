from pathlib import Path

import pytest

from pgmam_remote import facts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def foreign() -> facts.ServerFacts:
    """A real server with two clusters pgmam did not make (fixt online on 5499, main down on 5432)."""
    return facts.parse_probe(load("probe-foreign-clusters.txt"))
