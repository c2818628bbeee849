"""hosts.toml parsing: defaults, overrides, selection, and every refusal names file and line."""

from pathlib import Path

import pytest

from pgmam_remote import inventory
from pgmam_remote.errors import InventoryError, UsageError

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[defaults]
user = "deploy"
port = 2222
identity_file = "/keys/id"
known_hosts = "/keys/known_hosts"
ssh_config = ""
connect_timeout = 3

[hosts.prod1]
address = "203.0.113.10"

[hosts.prod2]
address = "203.0.113.11"
user = "admin"
pg_version = 16
port = 22

[hosts.edge]

[groups]
prod = ["prod1", "prod2"]
"""


def test_defaults_apply_and_hosts_override():
    inv = inventory.parse(GOOD, Path("hosts.toml"))
    p1, p2, edge = inv.hosts["prod1"], inv.hosts["prod2"], inv.hosts["edge"]
    assert (p1.user, p1.port, p1.address, p1.pg_version) == ("deploy", 2222, "203.0.113.10", None)
    assert (p2.user, p2.port, p2.pg_version) == ("admin", 22, 16)
    assert p1.identity_file == Path("/keys/id")
    assert p1.known_hosts == Path("/keys/known_hosts")
    assert p1.ssh_config is None
    assert p1.connect_timeout == 3.0
    assert edge.address == "edge"  # defaults to the name, resolved through ssh_config


def test_select_by_host_group_and_all_in_inventory_order():
    inv = inventory.parse(GOOD)
    assert [h.name for h in inv.select(["prod2"])] == ["prod2"]
    assert [h.name for h in inv.select(group="prod")] == ["prod1", "prod2"]
    assert [h.name for h in inv.select(["edge"], group="prod")] == ["prod1", "prod2", "edge"]
    assert [h.name for h in inv.select(all_hosts=True)] == ["prod1", "prod2", "edge"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda inv: inv.select(["nope"]), "unknown host 'nope'"),
        (lambda inv: inv.select(group="staging"), "unknown group 'staging'"),
        (lambda inv: inv.select(), "no host selected"),
    ],
)
def test_bad_selection_is_usage_error(call, message):
    with pytest.raises(UsageError, match=message):
        call(inventory.parse(GOOD))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[hosts.a]\nadress = 'x'\n", r"hosts.toml:2: unknown key 'adress' in \[hosts.a\]"),
        ("[defaults]\nuser = 'x'\ncolour = 1\n[hosts.a]\n", r"hosts.toml:3: unknown key 'colour'"),
        ("[hosts.a]\nport = 'ssh'\n", r"hosts.toml:2: port in \[hosts.a\] must be an integer"),
        ("[hosts.a]\nport = 70000\n", r"hosts.toml:2: port 70000 is not in 1..65535"),
        ("[hosts.a]\nconnect_timeout = true\n", r"hosts.toml:2: connect_timeout .* must be a number"),
        ("[hosts.a]\n[groups]\ng = ['a', 'b']\n", r"hosts.toml:3: group 'g' names unknown host\(s\): b"),
        ("[hosts.a]\n[groups]\ng = 'a'\n", r"group 'g' must be a list"),
        ("[hosts.a\n", r"hosts.toml:1: malformed TOML: "),
        ("[hosts.a]\n[host.b]\n", r"hosts.toml:2: unknown key 'host' in the top level"),
        ("[defaults]\nuser = 'x'\n", r"no hosts defined"),
        ("[hosts.a]\n[extra]\n", r"hosts.toml:2: unknown key 'extra' in the top level"),
        ("[hosts.'bad name']\n", r"host name 'bad name'"),
    ],
)
def test_refusals_name_file_line_and_problem(text, expected):
    with pytest.raises(InventoryError, match=expected):
        inventory.parse(text, Path("hosts.toml"))


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(InventoryError, match="not found") as info:
        inventory.load(tmp_path / "hosts.toml")
    assert "PGMAM_HOSTS" in (info.value.hint or "")


def test_env_var_points_at_the_inventory(tmp_path, monkeypatch):
    path = tmp_path / "inv.toml"
    path.write_text("[hosts.x]\n")
    monkeypatch.setenv("PGMAM_HOSTS", str(path))
    assert list(inventory.load().hosts) == ["x"]


def test_example_inventory_in_repo_is_valid():
    inv = inventory.load(REPO / "hosts.toml")
    assert inv.hosts and inv.groups
