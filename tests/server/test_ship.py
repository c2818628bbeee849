"""ship-wal.sh, the WAL shipper, on the throwaway server: real pgBackRest on both ends.

The off-host repo here is a second repository on the same server (a posix repo under
/var/lib/pgbackrest-vault), so that the shipper's own logic is what is tested: every archived file
arrives, a failing repo is recorded and holds nothing else up, and once it works again everything
that waited arrives, with no hole. Over SSH to a real repository host: tests/integration/test_offsite.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmam_remote import facts, server_code

from .conftest import Throwaway

VAULT = "/var/lib/pgbackrest-vault"
CONF = "/etc/pgbackrest/pgmam/repos/vault.conf"
STATE = "/var/lib/pgmam/ship/vault/shop"


def names(path: Path) -> set[str]:
    """The WAL segment and history names in an archive dir."""
    return {p.name.split("-")[0] for p in path.glob("*/*/*") if p.is_file() and not p.name.endswith(".backup")} | {
        p.name for p in path.glob("*/*.history")
    }


def ship(server: Throwaway) -> None:
    server.run("runuser", "-u", "postgres", "--", "sh", server_code.SERVER_DIR / "ship-wal.sh", "--once")


def switch(server: Throwaway, times: int) -> None:
    for n in range(times):
        server.sql(f"insert into items values ({5000 + n}, 'shipped?') on conflict do nothing")
        server.step("archive-now", 5432, "shop")


@pytest.fixture(scope="module")
def vault(server: Throwaway) -> Throwaway:
    server.run("install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0750", VAULT, "/run/pgbackrest-vault")
    conf = f"[global]\nrepo1-path={VAULT}\nlock-path=/run/pgbackrest-vault\nlog-path=/var/log/pgbackrest\n"
    server.step("write-file", CONF, "root:postgres", "0640", conf)
    pgbackrest = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={CONF}"]
    server.run(*pgbackrest, "--config-include-path=/etc/pgbackrest/conf.d", "--stanza=shop", "stanza-create")
    server.step("ship-app", "vault", "shop")
    return server


def probe_ship(server: Throwaway) -> facts.ShipState:
    out = server.run(*facts.probe_command().argv).stdout
    state = facts.parse_probe(out).shipping_of("vault", "shop")
    assert state is not None
    return state


def test_the_app_ships_from_a_cron_line_where_there_is_no_systemd(vault: Throwaway):
    assert "* * * * * postgres /bin/sh /var/lib/pgmam/current/ship-wal.sh --for 55" in (
        vault.path("/etc/cron.d/pgmam-ship").read_text()
    )
    assert vault.run("stat", "-c", "%U", STATE).stdout.strip() == "postgres"


def test_every_archived_file_arrives(vault: Throwaway):
    switch(vault, 2)
    ship(vault)
    local = names(vault.path("/var/lib/pgbackrest/archive/shop"))
    assert local and local <= names(vault.path(f"{VAULT}/archive/shop"))
    assert probe_ship(vault).files == 0
    assert not vault.path(f"{STATE}/error").exists() and vault.path(f"{STATE}/ok").exists()


def test_a_failing_repo_is_recorded_and_what_waits_arrives_later_with_no_hole(vault: Throwaway):
    repo, away = vault.path(VAULT), vault.path(VAULT + ".away")
    repo.rename(away)  # the repo is not there, as when its host is unreachable
    try:
        switch(vault, 3)  # the app archives locally all the same
        ship(vault)
        waiting = probe_ship(vault)
        assert waiting.files >= 3 and waiting.bytes > 0 and waiting.oldest is not None
        assert waiting.error and "ERROR" in waiting.error and waiting.error_time is not None
    finally:
        away.rename(repo)
    ship(vault)
    archive = vault.path(f"{VAULT}/archive/shop")
    local = names(vault.path("/var/lib/pgbackrest/archive/shop"))
    assert local <= names(archive)
    done = probe_ship(vault)
    assert done.files == 0 and done.error == ""
    out = vault.run(*facts.probe_command().argv).stdout
    assert facts.parse_probe(out).gaps_for("shop") == []


def test_the_shipper_runs_as_postgres_only(vault: Throwaway):
    done = vault.run("sh", server_code.SERVER_DIR / "ship-wal.sh", "--once", check=False)
    assert done.returncode == 2 and "runs as postgres" in done.stderr
