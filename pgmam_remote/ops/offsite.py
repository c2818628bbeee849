"""Off-host repositories: every app's backups and WAL also kept on a repository host.

The layout (docs/offsite.md), for server S, app A, repo R kept by repository host V:

- V keeps S's repository at /var/lib/pgbackrest/hosts/S, encrypted (aes-256-cbc), with S's
  config in /etc/pgbackrest/pgmam/hosts/S/: pgbackrest.conf (the repo, its passphrase) and
  conf.d/A.conf (where A lives on S). Each server has its own place, so two servers may both
  have an app called A. Backups to R run on V: pgBackRest takes them from the repository host.
- S keeps /etc/pgbackrest/pgmam/repos/R.conf (how to reach V). PostgreSQL archives into the local
  repository only; S's WAL shipper (server/ship-wal.sh) copies it on to R. An outage of V never
  holds up S's archiving or local backups: the WAL waits in the local repository meanwhile.
- postgres on S and postgres on V reach each other over SSH with keys pgmam installs.

The planners are pure: facts of both hosts (and their keys) in, a Plan out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .. import configs, passphrases, server_code
from ..command import POSTGRES, Command
from ..console import Console
from ..facts import MARKER, ServerFacts, StanzaInfo, gather, parse_pgbackrest_info
from ..inventory import Host, Inventory, Repo
from ..plan import Plan, Step, execute
from ..remote import HostSession, PasswordSource, Result, ask_password
from . import backup

HOSTS_CONF_DIR = "/etc/pgbackrest/pgmam/hosts"
REPOS_CONF_DIR = "/etc/pgbackrest/pgmam/repos"
HOSTS_REPO_DIR = "/var/lib/pgbackrest/hosts"
RECOVER_CONF_DIR = "/etc/pgbackrest/pgmam/recover"
# pgBackRest's SSH, with timeouts: an unreachable repository host fails a push in seconds, not minutes
CMD_SSH = f"{server_code.CODE_DIR}/pgbackrest-ssh.sh"
# How long a backup on the repository host waits for its last WAL segment to arrive from the
# server's shipper, which passes every few seconds (or every minute, from cron).
ARCHIVE_TIMEOUT_S = 600


def host_conf_dir(server: str) -> str:
    return f"{HOSTS_CONF_DIR}/{server}"


def repo_conf_path(repo: str) -> str:
    return f"{REPOS_CONF_DIR}/{repo}.conf"


def host_global_conf(server: str, cpu_count: int, passphrase: str) -> str:
    """On the repository host: server's repository, encrypted."""
    return f"""{MARKER}
# The off-host repository of server {server}'s apps, kept on this repository host by pgmam.
# Encrypted: without this passphrase (the operator keeps a copy) the backups cannot be read.
[global]
repo1-path={HOSTS_REPO_DIR}/{server}
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass={passphrase}
repo1-retention-full={configs.RETENTION_DAYS}
repo1-retention-full-type=time
compress-type=zst
compress-level=1
start-fast=y
process-max={configs.process_max(cpu_count)}
archive-timeout={ARCHIVE_TIMEOUT_S}
cmd-ssh={CMD_SSH}
log-level-console=warn
log-level-file=info
log-path=/var/log/pgbackrest/hosts/{server}
lock-path=/tmp/pgbackrest/hosts/{server}
"""


def host_stanza_conf(server_address: str, app: str, version: int, port: int) -> str:
    return f"""{MARKER}
# App {app} (PostgreSQL {version}/{app}, port {port}), reached over SSH as postgres.
[{app}]
pg1-host={server_address}
pg1-host-user=postgres
pg1-path={configs.data_dir(version, app)}
pg1-port={port}
pg1-socket-path=/var/run/postgresql
"""


def server_repo_conf(repo: Repo, server: str) -> str:
    """On a server: how its WAL shipper reaches the repository host, to its own repository there."""
    return _repo_conf(repo, server, "repos")


ASYNC_GET = (
    "archive-async=y\nspool-path=/var/spool/pgbackrest\narchive-get-queue-max=1GiB\n\n"
    "[global:archive-get]\nprocess-max=4\n"
)


def recover_conf(repo: Repo, source: str) -> str:
    """On the server `inv recover` rebuilds onto: how to read the lost server's repository. WAL
    replay fetches segments ahead, in parallel (async archive-get): one SSH round trip each would
    make the replay the slowest part of a recover."""
    return _repo_conf(repo, source, "recover") + ASYNC_GET


def _repo_conf(repo: Repo, server: str, log_dir: str) -> str:
    return f"""{MARKER}
# Off-host repo {repo.name} on repository host {repo.host}, {server}'s repository there; used with
# the stanzas of /etc/pgbackrest/conf.d (--config-include-path). PostgreSQL archives to the local repo.
[global]
repo1-host={repo.address}
repo1-host-user=postgres
repo1-host-config-path={host_conf_dir(server)}
cmd-ssh={CMD_SSH}
compress-type=zst
compress-level=1
log-level-console=warn
log-level-file=info
log-path=/var/log/pgbackrest/{log_dir}/{repo.name}
lock-path=/tmp/pgbackrest/{log_dir}/{repo.name}
"""


def recover_conf_path(repo: str, source: str) -> str:
    return f"{RECOVER_CONF_DIR}/{repo}-{source}.conf"


def info_command(server: str, app: str) -> Command:
    """On the repository host: pgbackrest info of server's app in its repository there."""
    return Command.of(
        "pgbackrest",
        f"--config-path={host_conf_dir(server)}",
        f"--stanza={app}",
        "--output=json",
        "info",
        user=POSTGRES,
    )


@dataclass(frozen=True)
class Keys:
    """postgres's SSH public key and the host key of one server ("" when not made yet)."""

    user_key: str
    host_key: str

    @classmethod
    def of(cls, facts: ServerFacts) -> Keys:
        return cls(facts.user_key, facts.host_key)

    @classmethod
    def parse(cls, result: Result) -> Keys:
        lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
        return cls(lines.get("user-key", "").strip(), lines.get("host-key", "").strip())


@dataclass(frozen=True)
class Attach:
    """One app of one server, to be kept in one off-host repo."""

    server: Host
    repo: Repo
    app: str
    version: int
    port: int


def check_passphrase(repo: Repo, vault: ServerFacts, passphrase: str | None) -> None:
    """Refuse a missing or wrong passphrase for a repo that already holds encrypted backups."""
    in_use = {server: hosted for server, hosted in vault.hosted.items() if hosted.cipher_sha256}
    if not in_use:
        return
    servers = ", ".join(sorted(in_use))
    if passphrase is None:
        raise passphrases.missing(repo.name, f", and {repo.host} already keeps encrypted backups in it (of {servers})")
    wrong = [s for s, hosted in in_use.items() if hosted.cipher_sha256 != passphrases.fingerprint(passphrase)]
    if wrong:
        raise passphrases.wrong(repo.name, f"the backups of {', '.join(sorted(wrong))} on {repo.host}")


def key_steps(server: str, vault: str) -> list[Step]:
    """Both ends get an SSH key for postgres (kept if there is one); the keys are read from the output."""
    return [
        Step(f"SSH key for postgres on {server}", server_code.step("ssh-key")),
        Step(f"SSH key for postgres on {vault}", server_code.step("ssh-key"), on=vault),
    ]


def trust_steps(
    server: Host, repo: Repo, facts: ServerFacts, vault: ServerFacts, keys: tuple[Keys, Keys]
) -> tuple[list[Step], list[str]]:
    """Pure: postgres on the server and on the repository host trust each other (host keys in
    known_hosts, user keys in authorized_keys); the steps still missing, and what is in place.
    ``keys``: (server's, repository host's); a key not made yet shows as a placeholder."""
    steps, done = [], []
    for on, on_facts, address, other, label in (
        (repo.host, vault, server.address, keys[0], f"postgres on {repo.host} and {server.name} trust each other"),
        (None, facts, repo.address, keys[1], f"postgres on {server.name} and {repo.host} trust each other"),
    ):
        if {f"known {address} {other.host_key}", f"authorized {other.user_key}"} <= on_facts.trusted:
            done.append(label)
        else:
            user_key = other.user_key or "<its key, made first>"
            steps.append(Step(label, server_code.step("trust", address, other.host_key, user_key), on=on))
    return steps, done


def plan_attach(a: Attach, facts: ServerFacts, vault: ServerFacts, passphrase: str, keys: tuple[Keys, Keys]) -> Plan:
    """Pure: the steps still missing for app a.app to be kept in repo a.repo.

    ``keys``: (server's, repository host's). Writes only configs whose content differs; makes the
    off-host stanza and its first full backup only when missing."""
    server, repo, app, v = a.server.name, a.repo, a.app, a.repo.host
    steps, done = trust_steps(a.server, repo, facts, vault, keys)
    wanted = [
        (v, f"{host_conf_dir(server)}/pgbackrest.conf", host_global_conf(server, vault.cpu_count, passphrase), True),
        (
            v,
            f"{host_conf_dir(server)}/conf.d/{app}.conf",
            host_stanza_conf(a.server.address, app, a.version, a.port),
            False,
        ),
        (server, repo_conf_path(repo.name), server_repo_conf(repo, server), False),
    ]
    for host, path, content, secret in wanted:
        on_facts = vault if host == v else facts
        if on_facts.offsite_files.get(path) == hashlib.sha256(content.encode()).hexdigest():
            done.append(f"{path} on {host}")
            continue
        write = configs.write_file(path, content, "root:postgres", "0640")
        if secret:  # the passphrase travels on stdin, never in a command line
            write = configs.write_secret(path, content, "root:postgres", "0640", "config with the repo passphrase")
        steps.append(Step(f"write {path}", write, on=None if host == server else v))
    hosted = vault.hosted.get(server)
    stanza = hosted.stanzas.get(app) if hosted else None
    first = [Step(f"directories for {server}'s repository", server_code.step("host-repo", server), on=v)]
    hint = f"check that postgres on {server} can reach {repo.address} over SSH"
    more, also = keep_steps(a, facts, stanza, hint, first)
    steps += more
    done += also
    return Plan(host=server, title=f"keep {app} in off-host repo {repo.name}", steps=tuple(steps), done=tuple(done))


def keep_steps(
    a: Attach, facts: ServerFacts, stanza: StanzaInfo | None, hint: str, first: list[Step] | None = None
) -> tuple[list[Step], list[str]]:
    """Pure: what any repo (``stanza``: the app's there, as read of it) still lacks once its configs
    are in place: the stanza (after ``first``), WAL shipping, a first full backup; and what is done."""
    repo, app = a.repo, a.app
    steps: list[Step] = []
    done: list[str] = []
    if stanza is None or not stanza.exists:
        steps += first or []
        steps.append(
            Step(
                f"create stanza {app} in repo {repo.name}",
                Command.of(
                    "pgbackrest",
                    f"--config={repo_conf_path(repo.name)}",
                    "--config-include-path=/etc/pgbackrest/conf.d",
                    f"--stanza={app}",
                    "stanza-create",
                    user=POSTGRES,
                ),
                hint=hint,
            )
        )
    else:
        done.append(f"stanza {app} in repo {repo.name}")
    if facts.shipping_of(repo.name, app) is None or facts.shipper not in ("active", "cron"):
        steps.append(Step(f"ship {app}'s WAL to repo {repo.name}", server_code.step("ship-app", repo.name, app)))
    else:
        done.append(f"WAL shipping to repo {repo.name}")
    if stanza is None or not stanza.backups:
        steps += backup_steps(a, "full")
    else:
        done.append(f"{len(stanza.backups)} backup(s) in repo {repo.name}, last {stanza.backups[-1].label}")
    return steps, done


def backup_steps(a: Attach, kind: str) -> list[Step]:
    """A backup of a.app into the off-host repo: the server asks its repository host to take it."""
    server, v = a.server.name, a.repo.host
    return [
        Step(
            backup.backup_title(a.app, kind, a.repo.name),
            backup.backup_command(a.app, a.version, kind, a.repo.name),
            long=True,
            hint=f"the WAL shipper on {server} must reach {v} (inv status shows its lag); re-run to retry",
        )
    ]


# -- running ---------------------------------------------------------------------


def passphrase_for(repo: Repo, vault: ServerFacts, *, create: bool) -> tuple[str, bool]:
    """The repo's passphrase, checked against the repository host; a new one when the repo is new.

    Returns (passphrase, created). ``create=False`` (a dry run) makes none and returns a stand-in."""
    existing = passphrases.read(repo.name)
    check_passphrase(repo, vault, existing)
    if existing is not None:
        return existing, False
    if not create:
        return "(a new passphrase)", False
    return passphrases.create(repo.name), True


def attach(
    session: HostSession,
    facts: ServerFacts,
    a: Attach,
    inventory: Inventory,
    console: Console,
    *,
    dry_run: bool = False,
    password_source: PasswordSource = ask_password,
) -> tuple[StanzaInfo | None, bool]:
    """Bring app a.app into off-host repo a.repo: trust, configs, a stanza, shipping, a first backup.

    Returns the app's stanza in the repo as its repository host reports it afterwards, and
    whether anything was changed."""
    vault_host = inventory.host(a.repo.host)
    with HostSession(vault_host, password_source=password_source) as vault_session:
        vault, _ = gather(vault_session, install=not dry_run)
        secret, created = passphrase_for(a.repo, vault, create=not dry_run)
        others = {vault_host.name: vault_session}
        keys = (Keys.of(facts), Keys.of(vault))
        if not dry_run and not all(k.user_key and k.host_key for k in keys):
            here, there = key_steps(a.server.name, vault_host.name)
            made = execute(Plan(a.server.name, "SSH keys", (here, there)), session, console, others=others)
            keys = (Keys.parse(made.of(here)), Keys.parse(made.of(there)))
        plan = plan_attach(a, facts, vault, secret, keys)
        if dry_run:
            if not (facts.user_key and vault.user_key):
                console.plan(Plan(a.server.name, "first", tuple(key_steps(a.server.name, vault_host.name))).render())
            console.plan(plan.render())
            return None, False
        if created:
            console.warning(passphrases.made(a.repo.name))
        if not plan.empty:
            execute(plan, session, console, others=others)
        final = vault_session.run(info_command(a.server.name, a.app), check=False)
        try:
            return parse_pgbackrest_info(final.stdout).get(a.app), not plan.empty
        except (ValueError, KeyError, TypeError):
            return None, not plan.empty


def preflight(repo: Repo, inventory: Inventory, password_source: PasswordSource = ask_password) -> None:
    """Refuse, before anything changes, a repository host that cannot be reached, or a passphrase
    that is missing or wrong for the backups it already keeps."""
    with HostSession(inventory.host(repo.host), password_source=password_source) as vault_session:
        vault, _ = gather(vault_session)
    check_passphrase(repo, vault, passphrases.read(repo.name))
