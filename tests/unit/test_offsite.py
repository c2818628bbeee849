"""Off-host repos, the pure parts: the inventory contract, the probe's sections, the plan that keeps
an app in a repo, the passphrase checks, and what status says of each repo."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgmam_remote import facts, health, inventory, passphrases
from pgmam_remote.errors import InventoryError, Refusal, UsageError
from pgmam_remote.ops import drop, offsite, recover, schedule, verify

from .conftest import load

GOOD = """
[defaults]
repos = ["vault"]

[hosts.prod1]
address = "10.0.0.1"

[hosts.prod2]
address = "10.0.0.2"

[hosts.vault1]
address = "10.0.0.9"
repos = []

[repos.vault]
type = "host"
host = "vault1"
"""
SERVER_KEY, VAULT_KEY = "ssh-ed25519 AAAAserver", "ssh-ed25519 AAAAvault"
HOST_KEY, VAULT_HOST_KEY = "ssh-ed25519 HHHHserver", "ssh-ed25519 HHHHvault"
PASS = "correct horse battery staple"


def test_repos_come_from_defaults_and_a_host_may_opt_out():
    inv = inventory.parse(GOOD)
    assert inv.hosts["prod1"].repos == ("vault",) and inv.hosts["vault1"].repos == ()
    (repo,) = inv.repos_of(inv.hosts["prod2"])
    assert (repo.name, repo.type, repo.host, repo.address) == ("vault", "host", "vault1", "10.0.0.9")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace('repos = ["vault"]', 'repos = ["vualt"]'), r"hosts.toml:3: repos names unknown repo 'vualt'"),
        (GOOD.replace("repos = []\n", ""), r"hosts.toml:3: host vault1 would back up to repo 'vault', which is"),
        (GOOD.replace('host = "vault1"', 'host = "vault9"'), r"hosts.toml:\d+: repo 'vault' names unknown host"),
        (
            GOOD.replace('type = "host"', 'type = "ftp"'),
            r'hosts.toml:\d+: \[repos.vault\] needs type = "host" or type = "s3"',
        ),
        (GOOD.replace('type = "host"', 'type = "s3"'), r"hosts.toml:\d+: unknown key 'host' in \[repos.vault\]"),
        (GOOD.replace('type = "host"', 'type = "host"\nbucket = "b"'), r"hosts.toml:\d+: unknown key 'bucket'"),
        (GOOD.replace('host = "vault1"\n', ""), r'\[repos.vault\] needs host = "NAME"'),
        (GOOD.replace('repos = ["vault"]', 'repos = "vault"'), r"repos in \[defaults\] must be a list"),
        (GOOD.replace('repos = ["vault"]', 'repos = ["vault", "vault"]'), r"must be a list of distinct repo names"),
        (GOOD + '\n[repos."a b"]\ntype = "host"\nhost = "prod1"\n', r"repo name 'a b'"),
    ],
)
def test_bad_repos_are_refused_with_file_and_line(text, expected):
    with pytest.raises(InventoryError, match=expected):
        inventory.parse(text, Path("hosts.toml"))


S3 = """
[hosts.prod1]
repos = ["bucket"]

[repos.bucket]
type = "s3"
endpoint = "s3.example.com"
bucket = "acme-pg"
region = "eu-central-003"
key_id_env = "PGMAM_S3_KEY_ID"
secret_env = "PGMAM_S3_SECRET"
"""


def test_an_s3_repo_names_its_credentials_and_reads_them_from_the_environment(monkeypatch):
    (repo,) = inventory.parse(S3 + "uri_style = 'path'\nport = 8443\n").repos_of(inventory.parse(S3).hosts["prod1"])
    assert (repo.type, repo.where, repo.host) == ("s3", "s3://acme-pg", "")
    assert (repo.s3.endpoint, repo.s3.port, repo.s3.path, repo.s3.uri_style) == (
        "s3.example.com",
        8443,
        "/pgmam",
        "path",
    )
    assert repo.s3.verify_tls is True and repo.s3.ca_file is None
    monkeypatch.delenv("PGMAM_S3_KEY_ID", raising=False)
    monkeypatch.setenv("PGMAM_S3_SECRET", "s3cret")
    with pytest.raises(
        InventoryError,
        match=r"^hosts.toml:5: repo 'bucket' needs its credentials in the environment: "
        r"PGMAM_S3_KEY_ID is not set$",
    ) as refused:
        repo.credentials()
    assert "s3cret" not in str(refused.value) + (refused.value.hint or "")
    monkeypatch.setenv("PGMAM_S3_KEY_ID", "AKIA")
    assert repo.credentials() == ("AKIA", "s3cret")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (S3.replace('bucket = "acme-pg"\n', ""), r"hosts.toml:5: \[repos.bucket\] needs bucket"),
        (S3.replace('"s3.example.com"', '"https://s3.example.com"'), r"hosts.toml:7: endpoint .* must be a host name"),
        (S3.replace('"acme-pg"', '"Acme_PG"'), r"hosts.toml:8: bucket 'Acme_PG' is not a valid bucket name"),
        (
            S3.replace('"PGMAM_S3_SECRET"', '"wJalrXUtnFEMI/K7MDENG"'),
            r"hosts.toml:11: secret_env must name an environment",
        ),
        (S3 + "verify_tls = 'no'\n", r"hosts.toml:12: verify_tls in \[repos.bucket\] must be true or false"),
        (S3 + "uri_style = 'virtual'\n", r"hosts.toml:12: uri_style must be"),
        (S3 + "ca_file = 'no-such-ca.pem'\n", r"hosts.toml:12: ca_file no-such-ca.pem is not a file"),
        (S3 + "path = 'pgmam'\n", r"hosts.toml:12: path 'pgmam' must look like"),
        (S3 + "secret = 'x'\n", r"hosts.toml:12: unknown key 'secret' in \[repos.bucket\]"),
    ],
)
def test_bad_s3_repos_are_refused_with_file_and_line(text, expected):
    with pytest.raises(InventoryError, match=expected):
        inventory.parse(text, Path("hosts.toml"))


def test_a_repo_host_reached_at_the_servers_own_address_is_not_off_host():
    text = GOOD.replace('host = "vault1"', 'host = "vault1"\naddress = "10.0.0.1"')
    with pytest.raises(InventoryError, match="host prod1 would back up to repo 'vault'"):
        inventory.parse(text, Path("hosts.toml"))


def hosted_info(backups: int) -> str:
    info = json.loads(load("pgbackrest-info-one-full.json"))
    info[0]["backup"] = info[0]["backup"][:backups]
    return json.dumps(info).replace('"fixt"', '"app1"')


def server_facts(extra: str = "") -> facts.ServerFacts:
    return facts.parse_probe(load("probe-one-app.txt") + extra)


def vault_facts(*, backups: int | None = None, passphrase: str = PASS, trusted: str = "") -> facts.ServerFacts:
    return facts.parse_probe(vault_text(backups=backups, passphrase=passphrase, trusted=trusted))


def vault_text(*, backups: int | None = None, passphrase: str = PASS, trusted: str = "") -> str:
    text = f"@@host\nvault1\n@@now\n{server_facts().now.timestamp()}\n@@cpus\n2\n"
    text += f"@@ssh-keys\nuser-key {VAULT_KEY}\nhost-key {VAULT_HOST_KEY}\n"
    text += trusted
    if backups is not None:
        text += f"@@hosted prod1\n{hosted_info(backups)}\n"
        text += f"@@hosted-cipher prod1\n{passphrases.fingerprint(passphrase)}\n"
    return text


def attach_plan(server: facts.ServerFacts, vault: facts.ServerFacts) -> list[str]:
    inv = inventory.parse(GOOD)
    a = offsite.Attach(inv.hosts["prod1"], inv.repos["vault"], "app1", 15, 5433)
    keys = (offsite.Keys(SERVER_KEY, HOST_KEY), offsite.Keys.of(vault))
    plan = offsite.plan_attach(a, server, vault, PASS, keys)
    return [f"{s.on or 'prod1'}: {s.title}" for s in plan.steps]


def test_a_new_app_gets_trust_configs_a_stanza_shipping_and_a_first_full_backup_there():
    assert attach_plan(server_facts(), vault_facts()) == [
        "vault1: postgres on vault1 and prod1 trust each other",
        "prod1: postgres on prod1 and vault1 trust each other",
        "vault1: write /etc/pgbackrest/pgmam/hosts/prod1/pgbackrest.conf",
        "vault1: write /etc/pgbackrest/pgmam/hosts/prod1/conf.d/app1.conf",
        "prod1: write /etc/pgbackrest/pgmam/repos/vault.conf",
        "vault1: directories for prod1's repository",
        "prod1: create stanza app1 in repo vault",
        "prod1: ship app1's WAL to repo vault",
        "prod1: full backup of app1 into repo vault, with its config",
    ]


def test_the_passphrase_travels_on_stdin_never_in_a_command_line():
    inv = inventory.parse(GOOD)
    a = offsite.Attach(inv.hosts["prod1"], inv.repos["vault"], "app1", 15, 5433)
    plan = offsite.plan_attach(a, server_facts(), vault_facts(), PASS, (offsite.Keys(SERVER_KEY, HOST_KEY),) * 2)
    for step in plan.steps:
        assert not any(PASS in arg for arg in step.command.argv), step.title
    (secret,) = [s for s in plan.steps if s.command.stdin]
    assert PASS in secret.command.stdin and PASS not in repr(secret.command)
    assert "\n".join(plan.render()).count("< <config with the repo passphrase>") == 1
    assert PASS not in "\n".join(plan.render())


def test_what_is_in_place_is_not_done_again():
    server_lines = "\n".join(
        [
            "@@ssh-keys",
            f"user-key {SERVER_KEY}",
            f"host-key {HOST_KEY}",
            f"known 10.0.0.9 {VAULT_HOST_KEY}",
            f"authorized {VAULT_KEY}",
            "@@offsite-files",
            f"{passphrases.fingerprint(offsite.server_repo_conf(inventory.parse(GOOD).repos['vault'], 'prod1'))}"
            " /etc/pgbackrest/pgmam/repos/vault.conf",
            "@@ship",
            "shipper active",
            "app vault app1 0 0 - 1764547000",
        ]
    )
    vault = vault_facts(backups=1, trusted=f"known 10.0.0.1 {HOST_KEY}\nauthorized {SERVER_KEY}\n")
    assert attach_plan(server_facts("\n" + server_lines + "\n"), vault) == [
        "vault1: write /etc/pgbackrest/pgmam/hosts/prod1/pgbackrest.conf",
        "vault1: write /etc/pgbackrest/pgmam/hosts/prod1/conf.d/app1.conf",
    ]


def test_a_missing_or_wrong_passphrase_for_a_repo_in_use_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(passphrases.CONFIG_ENV, str(tmp_path))
    repo = inventory.parse(GOOD).repos["vault"]
    offsite.check_passphrase(repo, vault_facts(), None)  # a new repo: a passphrase will be made
    with pytest.raises(Refusal, match=r"its passphrase is missing .*already keeps encrypted backups in it"):
        offsite.check_passphrase(repo, vault_facts(backups=1), None)
    with pytest.raises(Refusal, match="is not the one the backups of prod1 on vault1 were encrypted with"):
        offsite.check_passphrase(repo, vault_facts(backups=1), "another one")
    offsite.check_passphrase(repo, vault_facts(backups=1), PASS)


def test_a_passphrase_is_made_once_and_private(tmp_path, monkeypatch):
    monkeypatch.setenv(passphrases.CONFIG_ENV, str(tmp_path / "pgmam"))
    made = passphrases.create("vault")
    assert passphrases.read("vault") == made and len(made) >= 60
    assert (tmp_path / "pgmam" / "repo-vault.passphrase").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        passphrases.create("vault")


def offsite_entry(ship_line: str, vault: facts.ServerFacts | None, shipper: str = "active") -> dict:
    server = server_facts(f"\n@@ship\nshipper {shipper}\n{ship_line}\n")
    inv = inventory.parse(GOOD)
    view = health.RepoView(inv.repos["vault"], vault, None if vault else "no answer within 5 s")
    return health.offsite_status(server.cluster("app1"), server, view, "prod1")


def offsite_problems(ship_line: str, vault: facts.ServerFacts | None, shipper: str = "active") -> list[str]:
    return offsite_entry(ship_line, vault, shipper)["problems"]


def test_status_of_a_repo_that_keeps_up_is_quiet():
    assert offsite_problems("app vault app1 0 0 - 1764547000", vault_facts(backups=1)) == []
    assert offsite_entry("app vault app1 0 0 - 1764547000", vault_facts(backups=1))["waiting"]["behind"] is False


def test_status_names_the_repo_and_what_waits_when_a_push_failed_or_it_lags():
    now = server_facts().now
    recent = (now - timedelta(seconds=40)).timestamp()
    failed = f"app vault app1 3 70000 {recent} - {now.timestamp()} 0000000100000000000000A1: ERROR: [103]: no repo"
    (problem,) = offsite_problems(failed, vault_facts(backups=1))
    assert offsite_entry(failed, vault_facts(backups=1))["waiting"]["behind"] is True
    assert problem.startswith("vault: WAL 40s behind (3 files, 70.0 kB waiting): 0000000100000000000000A1: ERROR")
    late = f"app vault app1 9 1000 {(now - timedelta(minutes=7)).timestamp()} -"
    assert offsite_problems(late, vault_facts(backups=1))[0].startswith("vault: WAL 7m behind (9 files")


def test_status_of_an_unreachable_repo_host_a_dead_shipper_and_an_app_not_kept_there():
    assert offsite_problems("app vault app1 0 0 - -", None) == ["repo vault (vault1) unreachable: no answer within 5 s"]
    assert offsite_problems("app vault app1 0 0 - -", vault_facts(backups=1), shipper="failed") == [
        "the WAL shipper is not running (failed): systemctl status pgmam-ship"
    ]
    assert offsite_problems("", vault_facts()) == [
        "not kept in repo vault (vault1) yet: inv initcluster --host prod1 --app app1 --port 5433"
    ]


# -- recover (pure): which repo, which apps, and every refusal before anything changes ------------


def recover_request(**kwargs) -> recover.RecoverRequest:
    return recover.RecoverRequest(**{"source": "prod1", "all_apps": True, **kwargs})


def test_recover_picks_the_lost_servers_repo_and_refuses_what_cannot_work():
    inv = inventory.parse(GOOD)
    assert recover.pick_repo(inv, inv.hosts["prod2"], recover_request()).name == "vault"
    with pytest.raises(UsageError, match="--from prod2 is the server to recover onto"):
        recover.pick_repo(inv, inv.hosts["prod2"], recover_request(source="prod2"))
    with pytest.raises(UsageError, match="gone1 is not in the inventory"):
        recover.pick_repo(inv, inv.hosts["prod2"], recover_request(source="gone1"))
    assert recover.pick_repo(inv, inv.hosts["prod2"], recover_request(source="gone1", repo="vault")).name == "vault"
    with pytest.raises(Refusal, match="vault1 does not back up to repo vault"):
        recover.pick_repo(inv, inv.hosts["vault1"], recover_request())


def test_recover_refuses_apps_the_repo_does_not_keep():
    repo = inventory.parse(GOOD).repos["vault"]
    hosted = vault_facts(backups=1).hosted["prod1"]
    assert recover.apps_to_recover(hosted, repo, recover_request()) == ["app1"]
    with pytest.raises(Refusal, match="keeps no backup of nosuch from prod1"):
        recover.apps_to_recover(hosted, repo, recover_request(all_apps=False, apps=("nosuch",)))
    with pytest.raises(Refusal, match="keeps no backup of prod1's apps"):
        recover.apps_to_recover(None, repo, recover_request())


def plan_recover(new_facts: facts.ServerFacts, **kwargs) -> recover.AppPlan:
    repo = inventory.parse(GOOD).repos["vault"]
    hosted = vault_facts(backups=1).hosted["prod1"]
    return recover.plan_app("prod2", new_facts, hosted, repo, recover_request(**kwargs), "app1", "me@laptop", {})


EMPTY = "@@host\nprod2\n@@now\n{now}\n@@pgversions\n15\n@@clusters\n@@listen\n"


def test_recover_plans_the_app_on_a_fresh_server():
    fresh = facts.parse_probe(EMPTY.format(now=server_facts().now.timestamp()))
    plan = plan_recover(fresh, port=5440)
    titles = [s.title for s in plan.spec.plan.steps]
    assert titles[2] == "restore app1 from repo vault (prod1's backups on vault1) into /var/lib/postgresql/15/app1"
    assert plan.port == 5440 and plan.spec.plan.as_job
    assert "end" in plan.spec.plan.steps[5].command.argv  # no --to: all the WAL the repo has


def test_recover_refuses_an_app_already_there_a_taken_port_and_a_target_past_the_repos_wal():
    with pytest.raises(Refusal, match="an app named app1 already exists there"):
        plan_recover(server_facts())
    fresh = facts.parse_probe(EMPTY.format(now=server_facts().now.timestamp()) + "0.0.0.0:5440\n")
    with pytest.raises(Refusal, match=r"port 5440 .* is taken by a listening socket"):
        plan_recover(fresh, port=5440)
    fresh = facts.parse_probe(EMPTY.format(now=server_facts().now.timestamp()))
    with pytest.raises(Refusal, match=r"target 2020-01-01T00:00:00\+00:00 is before the earliest restorable point"):
        plan_recover(fresh, port=5440, to=datetime(2020, 1, 1, tzinfo=UTC))


def test_recover_to_the_newest_point_is_refused_when_the_repo_has_a_hole_on_the_way():
    """End-of-WAL recovery would stop at the hole and call that the end: refused, with a way out."""
    before, after = "000000010000000000000005", "000000010000000000000009"
    hole = f"@@hosted-gaps prod1\napp1 15-1 {before} {after} 1795479500 1795479600\n"
    newest = "@@hosted-newest prod1\napp1 00000001000000000000000A-0123abcd.zst 1795479700\n"
    vault = facts.parse_probe(vault_text(backups=1) + hole + newest)
    fresh = facts.parse_probe(EMPTY.format(now=server_facts().now.timestamp()))
    repo = inventory.parse(GOOD).repos["vault"]
    with pytest.raises(Refusal, match="is past a hole in app1's archived WAL") as refused:
        recover.plan_app("prod2", fresh, vault.hosted["prod1"], repo, recover_request(), "app1", "me@laptop", {})
    assert "pick a target before" in (refused.value.hint or "")
    plan = recover.plan_app(
        "prod2",
        fresh,
        vault.hosted["prod1"],
        repo,
        recover_request(to=datetime.fromtimestamp(1795479480, UTC)),
        "app1",
        "me@laptop",
        {},
    )
    assert any(arg.startswith("--target=2026-11-24 00:18:00") for arg in plan.spec.plan.steps[2].command.argv)


KEPT = "\n@@ship\nshipper active\napp vault app1 0 0 - 1764547000\n"


def whole_schedule(extra: str = KEPT, **kwargs) -> dict[str, str]:
    kwargs.setdefault("host_repos", ("vault",))
    asked = kwargs.pop("asked", {})
    cals = schedule.schedule_for(server_facts(extra), "prod1", "app1", asked, **kwargs)
    return {kind: cal.text for kind, cal in cals.items()}


def test_a_schedule_gives_each_repo_that_keeps_the_app_its_backups_an_hour_after_the_local_ones():
    assert whole_schedule() == {
        "full": "Sun 03:00",
        "diff": "Mon..Sat 03:00",
        "vault-full": "Sun 04:00",
        "vault-diff": "Mon..Sat 04:00",
    }
    assert whole_schedule("") == {"full": "Sun 03:00", "diff": "Mon..Sat 03:00"}  # not kept there yet


def test_a_repo_schedule_replaces_that_repos_backups_only_and_remove_with_repo_keeps_the_rest():
    current = "@@schedules\n" + "\n".join(
        f"# pgmam-schedule app=app1 type={kind} calendar={cal}"
        for kind, cal in [("full", "daily"), ("vault-full", "Sun_04:00"), ("vault-diff", "Mon..Sat_04:00")]
    )
    extra = KEPT + current + "\n"
    assert whole_schedule(extra, repo="vault", asked={"full": "Sat 05:00", "incr": "hourly"}) == {
        "full": "daily",
        "vault-full": "Sat 05:00",
        "vault-diff": "Mon..Sat 04:00",
        "vault-incr": "hourly",
    }
    assert whole_schedule(extra, repo="vault", remove=True) == {"full": "daily"}
    assert whole_schedule(extra, remove=True) == {}
    # a local re-schedule keeps the repo's calendars; a repo the host dropped loses its schedule
    assert whole_schedule(extra, asked={"full": "Sun 02:00"})["vault-full"] == "Sun 04:00"
    assert whole_schedule(extra, host_repos=()) == {"full": "Sun 03:00", "diff": "Mon..Sat 03:00"}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"repo": "elsewhere"}, "prod1 does not back up to repo elsewhere"),
        ({"repo": "vault", "extra": ""}, "app app1 is not kept in repo vault yet"),
    ],
)
def test_repo_schedules_refused(kwargs, expected):
    with pytest.raises(Refusal, match=expected):
        whole_schedule(kwargs.pop("extra", KEPT), **kwargs)


def test_a_scheduled_repo_backup_is_a_job_that_asks_the_repository_host():
    server = server_facts(KEPT)
    spec = schedule.job_spec("prod1", server.cluster("app1"), "vault-diff")
    assert spec.info == {"type": "diff", "mode": "scheduled", "repo": "vault"}
    (step,) = spec.plan.steps
    assert step.command.argv[-4:] == ("vault", "app1", "15", "diff") and "repo-backup.sh" in step.command.argv[0]
    assert schedule.what("vault-diff") == "diff backup into repo vault"
    drill = schedule.job_spec("prod1", server.cluster("app1"), "vault-verify")
    assert drill.op == "verify" and drill.info["repo"] == "vault" and drill.info["mode"] == "scheduled"
    restore_step, *_ = drill.plan.steps
    assert "--config=/etc/pgbackrest/pgmam/repos/vault.conf" in restore_step.command.argv
    assert drill.plan.steps[3].command.argv[4] == "app1@vault"  # recorded as a drill from the repo
    assert schedule.what("vault-verify", many=True) == "restore drills from repo vault"
    assert schedule.unit_name("app1", "vault-diff") == "pgmam-schedule-app1-vault-diff"


def repo_drill(vault: facts.ServerFacts, on: facts.ServerFacts | None = None, to=None) -> verify.VerifyPlan:
    server = server_facts()
    source = verify.FromRepo(
        "vault", offsite.recover_conf_path("vault", "prod1") if on else "/r.conf", "prod1" if on else None
    )
    return verify.plan_verify_repo("prod1", server, vault, source, "app1", to, "me", ("prod2", on) if on else None)


def test_a_drill_from_the_repo_restores_its_newest_backup_through_the_repos_config():
    plan = repo_drill(vault_facts(backups=1))
    restore_step, *_, examine, _, _ = plan.plan.steps
    argv = restore_step.command.argv
    assert "--config=/r.conf" in argv and "--config-include-path=/etc/pgbackrest/conf.d" in argv
    (fetch,) = [a for a in argv if a.startswith("--recovery-option=restore_command=")]
    assert (
        "--config=/r.conf" in fetch
        and "--archive-async" in fetch
        and "--pg1-path=/var/lib/postgresql/15/verify-app1-" in fetch
    )
    assert examine.command.argv[4] == "app1@vault"  # recorded beside, not over, the local drills
    assert plan.spec.info["repo"] == "vault" and plan.backup == json.loads(hosted_info(1))[0]["backup"][0]["label"]


def test_a_drill_on_another_server_reads_the_repo_as_a_recover_would_and_records_apart():
    on = server_facts()  # any server with PostgreSQL 15; its own app1 is no concern of the drill
    plan = repo_drill(vault_facts(backups=1), on=on)
    argv = plan.plan.steps[0].command.argv
    assert "--config=/etc/pgbackrest/pgmam/recover/vault-prod1.conf" in argv
    assert not any(a.startswith("--config-include-path") for a in argv)
    assert plan.plan.host == "prod2" and plan.plan.steps[3].command.argv[4] == "app1@vault@prod1"


@pytest.mark.parametrize(
    ("vault", "on", "expected"),
    [
        (vault_facts(), None, "prod1: app1 has no backup in repo vault"),
        (vault_facts(backups=1), replace(server_facts(), pg_versions=(16,)), "prod2: PostgreSQL 15 is not installed"),
    ],
)
def test_repo_drills_refused(vault, on, expected):
    with pytest.raises(Refusal, match=expected):
        repo_drill(vault, on=on)


def test_drill_records_are_read_per_repo_with_time_and_place():
    server = server_facts(
        "\n@@drills\napp1 1795483256 ok 20261124-011937F 1 1000 ok latest\n"
        "app1@vault 1795483300 ok 20261124-011937F 1 1000 ok latest 31 prod2\n"
        "app1@vault@prod9 1795483400 failed 20261124-011937F - - - latest\n"
    )
    local, there, _ = server.drills
    assert (local.repo, local.seconds, local.on) == (None, None, None)
    assert (there.app, there.repo, there.seconds, there.on) == ("app1", "vault", 31, "prod2")
    entry = offsite_entry("app vault app1 0 0 - 1764547000", vault_facts(backups=1))
    assert entry["last_proven_restorable"] is None  # offsite_entry's own probe has no drills
    view = health.RepoView(inventory.parse(GOOD).repos["vault"], vault_facts(backups=1))
    drilled = health.offsite_status(server.cluster("app1"), server, view, "prod1")["last_proven_restorable"]
    assert drilled["ok"] and drilled["seconds"] == 31 and drilled["on"] == "prod2"


def test_a_purge_deletes_the_app_in_every_repo_that_keeps_it_and_a_plain_drop_keeps_them():
    repos = tuple(inventory.parse(GOOD).repos.values())
    purge = drop.plan_drop("prod1", server_facts(KEPT), ["app1"], True, repos)
    assert [f"{s.on or 'prod1'}: {s.title}" for s in purge.steps][-3:] == [
        "prod1: stop shipping app1's WAL to repo vault",
        "vault1: delete app1's backups and WAL in repo vault",
        "prod1: delete stanza app1, its backups and config snapshots",
    ]
    assert purge.steps[-2].command.argv[-2:] == ("prod1", "app1")
    kept = drop.plan_drop("prod1", server_facts(KEPT), ["app1"], False, repos)
    assert not any(s.on for s in kept.steps) and "repo" not in " ".join(s.title for s in kept.steps)
    assert "(here and in repo vault on vault1)" in drop.keeps(["app1"], True, repos)[1]
    # an app not kept in the repo has nothing there to delete
    assert not any(s.on for s in drop.plan_drop("prod1", server_facts(), ["app1"], True, repos).steps)


def test_recover_follows_the_repos_history_file_from_a_backup_on_an_older_timeline():
    """The app was restored (pitr) on the lost server after its last backup in the repo: the repo's
    WAL is on timeline 2, its backups on 1. The history file says timeline 2 left 1 after the backup."""
    info = json.loads(hosted_info(1))
    info[0]["archive"][0]["max"] = "000000020000000000000005"
    on_tl2 = vault_text(backups=1).replace(hosted_info(1), json.dumps(info))
    fresh = facts.parse_probe(EMPTY.format(now=server_facts().now.timestamp()))
    repo = inventory.parse(GOOD).repos["vault"]
    without = facts.parse_probe(on_tl2)
    with pytest.raises(Refusal, match="no backup on its current timeline's history"):
        recover.plan_app("prod2", fresh, without.hosted["prod1"], repo, recover_request(), "app1", "me", {})
    history = "@@hosted-history prod1 app1\n1\t0/4000000\tbefore 2026-11-24 00:20:00+00\n"
    vault = facts.parse_probe(on_tl2 + history)
    assert vault.hosted["prod1"].history == {"app1": ((1, 0x4000000),)}
    plan = recover.plan_app("prod2", fresh, vault.hosted["prod1"], repo, recover_request(), "app1", "me", {})
    assert plan.spec.plan.steps[2].title.startswith("restore app1 from repo vault")
    # a backup taken on timeline 1 after timeline 2 left it cannot lead there
    late = "@@hosted-history prod1 app1\n1\t0/2800000\tbefore 2026-11-24 00:17:16+00\n"
    with pytest.raises(Refusal, match="no backup on its current timeline's history"):
        recover.plan_app(
            "prod2", fresh, facts.parse_probe(on_tl2 + late).hosted["prod1"], repo, recover_request(), "app1", "me", {}
        )


def test_a_drill_from_a_repo_the_host_does_not_use_or_on_its_repository_host_is_refused():
    inv = inventory.parse(GOOD)
    vault = inv.repos["vault"]
    with pytest.raises(Refusal, match="vault1 does not back up to repo vault"):
        verify.RepoDrill(inv, inv.hosts["vault1"], vault, "app1", None, None)
    with pytest.raises(Refusal, match="vault1 is the repository host of repo vault"):
        verify.RepoDrill(inv, inv.hosts["prod1"], vault, "app1", None, inv.hosts["vault1"])
