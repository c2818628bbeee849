"""Every refusal, through the real command line, in-process, on a recorded server.

The connection is a stand-in that answers pgmam's probe with a recorded one (sbx1: app1, PostgreSQL
15 on port 5433, one full backup) and fails the test on any other command: a refusal must come
from the facts alone, before anything runs on the server. The sandbox suite keeps a few of these
end to end.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from invoke import Program

from pgmam_remote import cli, console, server_code
from pgmam_remote.command import Command
from pgmam_remote.remote import HostSession, Result

from .conftest import load

INVENTORY = """
[defaults]
user = "pgmam"
identity_file = "{dir}/id_ed25519"
ssh_config = ""
known_hosts = "{dir}/known_hosts"

[hosts.sbx1]
address = "127.0.0.1"
"""


@pytest.fixture
def pgmam(monkeypatch, tmp_path, capsys) -> Callable[..., tuple[int, str, list[Command]]]:
    (tmp_path / "hosts.toml").write_text(INVENTORY.format(dir=tmp_path))
    (tmp_path / "known_hosts").write_text("")  # never read: nothing connects
    monkeypatch.setenv("PGMAM_HOSTS", str(tmp_path / "hosts.toml"))
    monkeypatch.setattr(console, "_default", None)  # a console on this test's captured stderr
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    probe = load("probe-one-app.txt")
    others: list[Command] = []

    def run(self: HostSession, command: Command, **_: object) -> Result:
        if server_code.text("probe.sh") in command.argv:  # the probe (after installing pgmam's code)
            return Result(command.line(), 0, probe, "")
        others.append(command)
        raise AssertionError(f"a refusal ran a command on the server: {command.line()}")

    monkeypatch.setattr(HostSession, "open", lambda self: self)
    monkeypatch.setattr(HostSession, "close", lambda self: None)
    monkeypatch.setattr(HostSession, "run", run)

    def call(*argv: str) -> tuple[int, str, list[Command]]:
        program = Program(namespace=cli.collection(), name="pgmam", binary="pgmam", version="test")
        with pytest.raises(SystemExit) as ended:
            program.run(["pgmam", *argv])
        captured = capsys.readouterr()
        call.out = captured.out  # type: ignore[attr-defined]
        return ended.value.code or 0, captured.err, others

    return call


H = ("--host", "sbx1")
FUTURE = "2026-11-24 01:24:40+00"  # an hour after the recorded probe's server time
NOW = "2026-11-24 00:24:00+00"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        # initcluster
        (["initcluster", *H, "--app", "Bad-Name", "--port", "5480"], 1, "app name 'Bad-Name' is not allowed"),
        (["initcluster", *H, "--app", "x;reboot", "--port", "5480"], 1, "is not allowed"),
        (["initcluster", *H, "--app", "lowport", "--port", "80"], 1, "port 80 is outside 1024..65535"),
        (["initcluster", *H, "--app", "noport"], 2, "missing --port"),
        (["initcluster", *H, "--app", "taken", "--port", "5433"], 1, "port 5433 belongs to cluster 15/app1"),
        (["initcluster", *H, "--app", "pg16", "--port", "5481", "--pg-version", "16"], 1, "PostgreSQL 16 is not"),
        (["initcluster", *H, "--app", "app1", "--port", "5434"], 1, "app1 already exists as PostgreSQL 15 on port"),
        # pitr, rollback, restore points
        (["pitr", *H, "--app", "app1", "--to", NOW[:-3]], 1, "no time zone"),
        (["pitr", *H, "--app", "app1", "--to", FUTURE, "--yes"], 1, "is in the future"),
        (["pitr", *H, "--app", "app1", "--to", "2001-01-01 00:00:00+00", "--yes"], 1, "before the earliest"),
        (["pitr", *H, "--app", "nosuch", "--to", NOW, "--yes"], 1, "no cluster named nosuch"),
        (["pitr", *H, "--app", "app1", "--to", NOW, "--to-point", "x"], 2, "exactly one of --to and --to-point"),
        (["pitr", *H, "--app", "app1", "--to-point", "nosuch", "--yes"], 1, "no restore point named 'nosuch'"),
        (["pitr", *H, "--app", "app1", "--to", NOW], 1, "confirmation needed and there is no terminal"),
        (["pitr", *H, "--app", "app1", "--to", NOW, "--into", "copy"], 2, "--into needs --port"),
        (["rollback", *H, "--app", "app1", "--yes"], 1, "app1 has no preserved data dir to roll back to"),
        # backups, schedules, drills
        (["backup", *H, "--app", "nosuch"], 1, "no cluster named nosuch"),
        (["backup", *H, "--app", "app1", "--type", "weekly"], 1, "backup type 'weekly' is not one of"),
        (["backup", *H, "--all-apps", "--type", "weekly"], 1, "backup type 'weekly' is not one of"),
        (["backup", *H, "--app", "app1", "--all-apps"], 2, "pass exactly one of --app and --all-apps"),
        (["backup", *H], 2, "pass exactly one of --app and --all-apps"),
        (["backups", *H, "--app", "nosuch"], 1, "no cluster named nosuch"),
        (["schedule", *H, "--app", "app1", "--full", "someday"], 1, "schedule 'someday' is not understood"),
        (["schedule", *H, "--app", "app1", "--incr", "25:00"], 1, "not understood"),
        (["schedule", *H, "--app", "app1", "--diff", "Mon..Funday 02:00"], 1, "is not a day or a day range"),
        (["schedule", *H, "--app", "app1", "--remove", "--full", "daily"], 2, "--remove takes no calendars"),
        (["schedule", *H, "--app", "nosuch"], 1, "no cluster named nosuch"),
        (["schedule", *H, "--app", "app1"], 1, "systemd is not PID 1 and cron is not installed"),
        (["verify", *H, "--app", "nosuch"], 1, "no cluster named nosuch"),
        (["verify", *H, "--app", "app1", "--to", "2999-01-01 00:00:00+00"], 1, "is in the future"),
        # copies and removal
        (["branch", *H, "--app", "app1", "--name", "Bad"], 1, "is not allowed"),
        (["branch", *H, "--app", "app1", "--name", "dev", "--sync"], 1, "app1_dev is not a branch"),
        (["dropcluster", *H, "--app", "nosuch", "--yes"], 1, "no cluster named nosuch"),
        (["dropcluster", *H, "--app", "app1"], 1, "confirmation needed and there is no terminal"),
        # the watchdog (the recorded server has no python3)
        (["watchdog", *H], 1, "sbx1: python3 is not installed; the watchdog runs with it"),
        (["notify", "--test", *H], 1, "sbx1: no watchdog is set up there, so nothing to send with"),
        (["notify", *H], 2, "inv notify only sends a test message for now"),
        (["watchdog"], 2, "no host selected"),
    ],
)
def test_refused_from_the_facts_alone_with_a_reason_and_a_hint(pgmam, argv, code, message):
    exit_code, err, others = pgmam(*argv)
    assert (exit_code, others) == (code, [])
    assert message in err
    assert "Traceback" not in err
    if code == 1:
        assert "hint:" in err


@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        (
            ["check", *H],
            0,
            "PGMAM OK - sbx1: 1 app healthy | apps=1 unhealthy=0 app1_backup_age=65s app1_archive_age=64s",
        ),
        (["check", *H, "--app", "nosuch"], 3, "PGMAM UNKNOWN - sbx1: no app nosuch managed by pgmam there"),
        (["check", *H, "--app", "Bad-Name"], 3, "PGMAM UNKNOWN - app name 'Bad-Name' is not allowed"),
        (["check", "--host", "nosuch"], 3, "PGMAM UNKNOWN - unknown host 'nosuch'"),
    ],
)
def test_check_answers_as_a_nagios_plugin_does(pgmam, argv, code, line):
    exit_code, _, others = pgmam(*argv)
    assert (exit_code, others) == (code, [])
    assert pgmam.out.startswith(line) and pgmam.out.count("\n") == 1
