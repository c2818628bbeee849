"""S3 repos, the pure parts: the server's repo config, what the S3 state step prints, the plan that
keeps an app in a bucket (its keys and passphrase never in a command line), the passphrase checks,
and what status and dropcluster do with an S3 repo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pgmam_remote import facts, health, inventory, passphrases
from pgmam_remote.errors import Refusal
from pgmam_remote.ops import drop, offsite, recover, s3

from .conftest import load
from .test_offsite import server_facts

INVENTORY = """
[hosts.prod1]
address = "10.0.0.1"
repos = ["bucket"]

[repos.bucket]
type = "s3"
endpoint = "s3.example.com"
port = 8443
bucket = "acme-pg"
key_id_env = "PGMAM_S3_KEY_ID"
secret_env = "PGMAM_S3_SECRET"
uri_style = "path"
"""
KEYS = ("AKIAEXAMPLE", "wJalrXUtnFEMI-secret")
PASS = "correct horse battery staple"
SHIPPING = "\n@@ship\nshipper active\napp bucket app1 0 0 - 1764547000\n"


def bucket(text: str = INVENTORY) -> inventory.Repo:
    return inventory.parse(text, Path("hosts.toml")).repos["bucket"]


def state(*, backups: int = 1, error: str = "", history: bool = False) -> str:
    """What server/s3-state.sh prints, as recorded from a sandbox bucket."""
    info = load("pgbackrest-info-one-full.json").replace('"fixt"', '"app1"')
    text = f"\n@@hosted prod1\n{error or info if backups else '[]'}\n@@hosted-stanzas prod1\napp1\n"
    text += "\n@@hosted-newest prod1\napp1 000000010000000000000009-0123abcd.zst 1764547000\n"
    text += "\n@@hosted-gaps prod1\napp1 15-1 000000010000000000000004 000000010000000000000007 1764546000 1764546100\n"
    if history:
        text += "\n@@hosted-history prod1 app1\n1\t0/3000000\tno recovery target specified\n"
    return text


def test_the_servers_config_points_at_its_own_prefix_encrypted_with_a_short_io_timeout():
    conf = s3.repo_conf(bucket(), "prod1", 4, PASS, KEYS)
    lines = set(conf.splitlines())
    assert {"repo1-type=s3", "repo1-path=/pgmam/prod1", "repo1-s3-bucket=acme-pg", "repo1-storage-port=8443"} <= lines
    assert {"repo1-s3-uri-style=path", "repo1-cipher-type=aes-256-cbc", f"repo1-cipher-pass={PASS}"} <= lines
    assert {f"repo1-s3-key={KEYS[0]}", f"repo1-s3-key-secret={KEYS[1]}", "io-timeout=10"} <= lines
    assert not any(line.startswith("repo1-storage-ca-file") for line in lines)
    with_ca = s3.repo_conf(bucket(INVENTORY + "verify_tls = false\n"), "prod1", 4, PASS, KEYS)
    assert "repo1-storage-verify-tls=n" in with_ca.splitlines()
    assert s3.where(bucket(), "prod2") == "s3://acme-pg/pgmam/prod2"


def test_the_state_steps_sections_parse_as_a_repository_hosts_do():
    hosted = s3.parse_state(state(history=True), "prod1")
    assert hosted is not None and hosted.held == ("app1",) and hosted.error is None
    assert [b.type for b in hosted.stanzas["app1"].backups] == ["full"]
    assert hosted.newest["app1"][0] == "000000010000000000000009"
    (gap,) = hosted.gaps
    assert (gap.stanza, gap.before, gap.after, gap.missing) == (
        "app1",
        "000000010000000000000004",
        "000000010000000000000007",
        2,
    )
    assert hosted.history["app1"]
    garbage = state(error="ERROR: [039]: HTTP request failed with 403 (Forbidden)\n\x8f\x01binary")
    assert s3.parse_state(garbage, "prod1").error.startswith("ERROR: [039]")  # the first ERROR line, not the garbage
    assert s3.parse_state(state(), "prod2") is None


# `pgbackrest info --output=json` of a bucket read with a wrong passphrase, as pgBackRest 2.45 prints
# it (exit 0): the error is the repo entry's, the stanza's says only "other".
WRONG_PASSPHRASE = json.dumps(
    [
        {
            "archive": [],
            "backup": [],
            "cipher": "aes-256-cbc",
            "db": [],
            "name": "app1",
            "repo": [
                {
                    "cipher": "aes-256-cbc",
                    "key": 1,
                    "status": {
                        "code": 99,
                        "message": "[FormatError] unable to load info file '/pgmam/prod1/backup/app1/backup.info' or "
                        "'/pgmam/prod1/backup/app1/backup.info.copy':\nFormatError: key/value found outside of "
                        "section at line 1: \ufffd/\u05a5\nHINT: has a stanza-create been performed?",
                    },
                }
            ],
            "status": {"code": 99, "lock": {"backup": {"held": False}}, "message": "other"},
        }
    ]
)


def test_a_missing_or_wrong_passphrase_is_refused_when_the_prefix_holds_backups():
    repo = bucket()
    wrong = s3.parse_state(state(error=WRONG_PASSPHRASE), "prod1")
    assert wrong.error is None and wrong.stanzas["app1"].status_message.startswith("other; [FormatError] unable")
    # the garbage may break the JSON itself (a raw control byte): still refused as a wrong passphrase
    broken = s3.parse_state(state(error=WRONG_PASSPHRASE.replace("\\ufffd", "\x01\n\x02")), "prod1")
    assert broken.stanzas == {} and "[FormatError]" in broken.error
    with pytest.raises(Refusal, match="is not the one the backups in"):
        s3.check_passphrase(repo, "prod1", broken, PASS)
    with pytest.raises(
        Refusal,
        match=r"passphrase in .*repo-bucket.passphrase is not the one the backups in "
        r"s3://acme-pg/pgmam/prod1 were encrypted with",
    ):
        s3.check_passphrase(repo, "prod1", wrong, PASS)
    with pytest.raises(Refusal, match=r"its passphrase is missing .* already holds encrypted backups of app1"):
        s3.check_passphrase(repo, "prod1", s3.parse_state(state(), "prod1"), None)
    empty = s3.parse_state("\n@@hosted prod1\n[]\n@@hosted-stanzas prod1\n", "prod1")
    s3.check_passphrase(repo, "prod1", empty, None)  # a new prefix: a new passphrase is fine
    s3.check_passphrase(repo, "prod1", s3.parse_state(state(), "prod1"), PASS)


def test_the_plan_writes_the_config_on_stdin_then_stanza_shipping_and_a_first_backup():
    a = offsite.Attach(inventory.parse(INVENTORY).hosts["prod1"], bucket(), "app1", 15, 5432)
    empty = s3.parse_state("\n@@hosted prod1\n[]\n@@hosted-stanzas prod1\n", "prod1")
    conf = s3.repo_conf(a.repo, "prod1", 4, PASS, KEYS)
    plan = s3.plan_attach(a, server_facts(), empty, conf, "-----BEGIN CERTIFICATE-----\nMIIB\n")
    assert [s.title for s in plan.steps] == [
        "write /etc/pgbackrest/pgmam/repos/bucket.ca.pem",
        "write /etc/pgbackrest/pgmam/repos/bucket.conf",
        "create stanza app1 in repo bucket",
        "ship app1's WAL to repo bucket",
        "full backup of app1 into repo bucket, with its config",
    ]
    rendered = "\n".join(plan.render())
    for secret in (PASS, *KEYS):
        assert secret not in rendered
        assert all(secret not in arg for s in plan.steps for arg in s.command.argv)
    assert plan.steps[1].command.stdin == conf and "< <config with the repo's keys and passphrase>" in rendered
    # a re-run with everything in place changes nothing
    done = server_facts(
        SHIPPING
        + "\n@@offsite-files\n"
        + "".join(
            f"{hashlib.sha256(text.encode()).hexdigest()}  {path}\n"
            for path, text in ((offsite.repo_conf_path("bucket"), conf),)
        )
    )
    again = s3.plan_attach(a, done, s3.parse_state(state(), "prod1"), conf, None)
    assert again.empty, again.render()


def test_status_names_the_bucket_and_reads_the_window_from_it():
    server = server_facts(SHIPPING)
    hosted = s3.parse_state(state(), "prod1")
    view = health.RepoView(bucket(), s3.as_vault(server, "prod1", hosted))
    entry = health.offsite_status(server.cluster("app1"), server, view, "prod1")
    assert (entry["repo"], entry["host"], entry["where"]) == ("bucket", None, "s3://acme-pg")
    assert entry["backup_count"] == 1 and entry["reachable"] is True
    down = health.RepoView(bucket(), None, "repo bucket cannot be read from prod1: ERROR: [049]: timeout")
    problems = health.offsite_status(server.cluster("app1"), server, down, "prod1")["problems"]
    assert any(p.startswith("repo bucket (s3://acme-pg) unreachable: ") for p in problems), problems


def test_a_purge_deletes_the_app_in_the_bucket_from_the_server_before_its_stanza_config_goes():
    plan = drop.plan_drop("prod1", server_facts(SHIPPING), ["app1"], True, (bucket(),))
    titles = [f"{s.on or 'prod1'}: {s.title}" for s in plan.steps][-2:]
    assert titles == [
        "prod1: delete app1's backups and WAL in repo bucket",
        "prod1: delete stanza app1, its backups and config snapshots",
    ]
    assert plan.steps[-2].command.argv[-2:] == ("bucket", "app1")
    assert "(here and in repo bucket on s3://acme-pg)" in drop.keeps(["app1"], True, (bucket(),))[1]


def test_passphrases_for_s3_repos_live_where_the_others_do(monkeypatch, tmp_path):
    monkeypatch.setenv(passphrases.CONFIG_ENV, str(tmp_path))
    assert passphrases.path("bucket") == tmp_path / "repo-bucket.passphrase"
    assert facts.HostedRepo("prod1", {}).held == ()


def test_a_server_reads_another_servers_prefix_with_a_config_on_stdin_and_no_ssh_trust(monkeypatch, tmp_path):
    monkeypatch.setenv(passphrases.CONFIG_ENV, str(tmp_path))
    monkeypatch.setenv("PGMAM_S3_KEY_ID", KEYS[0])
    monkeypatch.setenv("PGMAM_S3_SECRET", KEYS[1])
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    text = INVENTORY.replace("[hosts.prod1]", "[hosts.prod2]\nrepos = ['bucket']\n\n[hosts.prod1]")
    inv = inventory.parse(text + 'ca_file = "ca.pem"\n', tmp_path / "hosts.toml")
    repo, new = inv.repos["bucket"], inv.hosts["prod2"]
    with pytest.raises(Refusal, match=r"repo bucket: its passphrase is missing"):
        recover.prepare_steps(new, repo, "prod1", server_facts(), server_facts())
    (tmp_path / "repo-bucket.passphrase").write_text(PASS + "\n")
    steps = recover.prepare_steps(new, repo, "prod1", server_facts(), server_facts())
    assert [s.title for s in steps] == [
        "write /etc/pgbackrest/pgmam/repos/bucket.ca.pem",
        "write /etc/pgbackrest/pgmam/recover/bucket-prod1.conf (to read prod1's repository in s3://acme-pg/pgmam/prod1)",
    ]
    conf = steps[1].command.stdin
    assert "repo1-path=/pgmam/prod1" in conf and f"repo1-cipher-pass={PASS}" in conf and "archive-async=y" in conf
    assert all(PASS not in arg and KEYS[1] not in arg for s in steps for arg in s.command.argv)
