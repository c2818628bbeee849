"""Off-host repos in S3-compatible object storage.

The layout (docs/offsite.md), for server S, app A, S3 repo R (bucket B, prefix P):

- S keeps /etc/pgbackrest/pgmam/repos/R.conf: the bucket, its keys and the repo's passphrase
  (root:postgres, 0640), plus R.ca.pem when the inventory names a CA. S's repository is B at P/S,
  encrypted (aes-256-cbc), so two servers may both have an app called A.
- As for a repository host, PostgreSQL archives into the local repository only and S's WAL
  shipper (server/ship-wal.sh) copies it on to R: an outage of the bucket never holds up local
  archiving or local backups. Backups into R are taken on S itself (steps/repo-backup.sh).
- What R keeps of S is read on S (server/s3-state.sh), which reaches the bucket; the operator's
  machine may not. It prints the sections a repository host's probe prints, parsed the same way.

The keys come from the operator's environment (the inventory names the variables) and travel to
the server on stdin only, as the passphrase does.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from .. import configs, passphrases, server_code
from ..command import Command, sh
from ..console import Console
from ..errors import Refusal
from ..facts import MARKER, HostedRepo, ServerFacts, StanzaInfo, parse_hosted, split_sections
from ..inventory import Repo
from ..plan import Plan, Step, execute
from ..remote import HostSession
from . import offsite

# An unreachable bucket fails a request after about 4 x io-timeout; an archive-push tries two
# files, so about 8 x (80 s here, 481 s with pgBackRest's default of 60 s).
IO_TIMEOUT_S = 10
SECRET_CONF = "config with the repo's keys and passphrase"  # what --dry-run shows of it


def ca_path(repo: str) -> str:
    return f"{offsite.REPOS_CONF_DIR}/{repo}.ca.pem"


def prefix(repo: Repo, server: str) -> str:
    """Where in the bucket a server's repository lives."""
    assert repo.s3 is not None
    return f"{repo.s3.path}/{server}"


def where(repo: Repo, server: str) -> str:
    assert repo.s3 is not None
    return f"s3://{repo.s3.bucket}{prefix(repo, server)}"


def repo_conf(
    repo: Repo, server: str, cpu_count: int, passphrase: str, keys: tuple[str, str], log_dir: str = "repos"
) -> str:
    """On the server: ``server``'s repository in the bucket, encrypted; with the keys and the
    passphrase. ``log_dir``: "recover" for a config that reads another server's repository."""
    s3 = repo.s3
    assert s3 is not None
    tls = [f"repo1-storage-ca-file={ca_path(repo.name)}"] if s3.ca_file else []
    if not s3.verify_tls:
        tls.append("repo1-storage-verify-tls=n")
    lines = "\n".join(
        [
            "repo1-type=s3",
            f"repo1-path={prefix(repo, server)}",
            f"repo1-s3-endpoint={s3.endpoint}",
            f"repo1-storage-port={s3.port}",
            f"repo1-s3-bucket={s3.bucket}",
            f"repo1-s3-region={s3.region}",
            f"repo1-s3-uri-style={s3.uri_style}",
            *tls,
            f"repo1-s3-key={keys[0]}",
            f"repo1-s3-key-secret={keys[1]}",
            "repo1-cipher-type=aes-256-cbc",
            f"repo1-cipher-pass={passphrase}",
            f"repo1-retention-full={configs.RETENTION_DAYS}",
            "repo1-retention-full-type=time",
        ]
    )
    return f"""{MARKER}
# Off-host repo {repo.name}: {server}'s repository in S3 bucket {s3.bucket} at {s3.endpoint}, encrypted.
# Holds the bucket's keys and the repo's passphrase (the operator keeps a copy): root:postgres 0640.
# Used with the stanzas of /etc/pgbackrest/conf.d (--config-include-path); PostgreSQL archives to the
# local repo, the WAL shipper copies it on.
[global]
{lines}
compress-type=zst
compress-level=1
start-fast=y
process-max={configs.process_max(cpu_count)}
archive-timeout={offsite.ARCHIVE_TIMEOUT_S}
io-timeout={IO_TIMEOUT_S}
log-level-console=warn
log-level-file=info
log-path=/var/log/pgbackrest/{log_dir}/{repo.name}
lock-path=/tmp/pgbackrest/{log_dir}/{repo.name}
"""


def state_command(server: str, repo: str, conf: str | None = None, ca: str | None = None) -> Command:
    """Read what the repo keeps of server's apps, on the server (server/s3-state.sh, sent with the
    command: nothing is installed or changed): with its installed config, or with ``conf`` and
    ``ca`` (on stdin: it holds the keys)."""
    script = server_code.text("s3-state.sh")
    gaps = server_code.text("wal-gaps.awk")
    if conf is None:
        return sh(script, server, repo, gaps, timeout=300)
    return sh(script, server, "-", gaps, timeout=300).with_stdin(conf + (ca or ""), f"repo {repo} config")


def parse_state(text: str, server: str) -> HostedRepo | None:
    """The state step's output -> what the repo keeps of server; each app's port is the one its
    newest backup was annotated with (steps/repo-backup.sh)."""
    hosted = parse_hosted(split_sections(text)).get(server)
    if hosted is None:
        return None
    ports = {}
    for app, stanza in hosted.stanzas.items():
        port = dict(stanza.backups[-1].annotation).get("pgmam-port", "") if stanza.backups else ""
        if port.isdigit():
            ports[app] = int(port)
    return replace(hosted, ports=ports)


def try_state(
    session: HostSession, repo: Repo, server: str, conf: str | None = None, ca: str | None = None
) -> tuple[HostedRepo | None, str]:
    """What the repo keeps of ``server``, read on ``session``'s host, or why it could not be read
    (unreachable, refused keys, no such bucket): pgBackRest's last line."""
    done = session.run(state_command(server, repo.name, conf, ca), check=False)
    hosted = parse_state(done.stdout, server) if done.exit_status == 0 else None
    why = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return hosted, why[-1] if why else "no output"


def read_state(
    session: HostSession, repo: Repo, server: str, conf: str | None = None, ca: str | None = None
) -> HostedRepo:
    """:func:`try_state`, refused when the bucket cannot be read."""
    hosted, why = try_state(session, repo, server, conf, ca)
    if hosted is None:
        raise Refusal(
            f"repo {repo.name} ({where(repo, server)}) cannot be read from {session.host.name}: {why}",
            hint="check the endpoint, the bucket and the keys; inv status shows the repo once it answers",
        )
    return hosted


def as_vault(facts: ServerFacts, server: str, hosted: HostedRepo | None) -> ServerFacts:
    """The server's facts standing in for a repository host's: what status, `inv backups` and the
    backup refusals read of a repo (its ``hosted`` entry for the server) is the same for both kinds."""
    return replace(facts, hosted={server: hosted} if hosted is not None else {})


def check_passphrase(repo: Repo, server: str, hosted: HostedRepo, passphrase: str | None) -> None:
    """Refuse a missing or wrong passphrase for a prefix that already holds the server's backups.

    A wrong passphrase does not make pgBackRest say so: it reads garbage (a FormatError)."""
    if not hosted.held:
        return
    place = where(repo, server)
    if passphrase is None:
        raise passphrases.missing(
            repo.name, f", and {place} already holds encrypted backups of {', '.join(hosted.held)}"
        )
    errors = [hosted.error or "", *(stanza.status_message for stanza in hosted.stanzas.values())]
    if any("FormatError" in error or "CryptoError" in error for error in errors):
        raise passphrases.wrong(repo.name, f"the backups in {place}")


def plan_attach(a: offsite.Attach, facts: ServerFacts, hosted: HostedRepo, conf: str, ca: str | None) -> Plan:
    """Pure: the steps still missing for app a.app to be kept in S3 repo a.repo. Writes only files
    whose content differs; makes the stanza and its first full backup only when missing."""
    server, repo, app = a.server.name, a.repo, a.app
    steps: list[Step] = []
    done: list[str] = []
    wanted = [(offsite.repo_conf_path(repo.name), conf, "root:postgres", "0640", True)]
    if ca is not None:
        wanted.insert(0, (ca_path(repo.name), ca, "root:root", "0644", False))
    for path, content, owner, mode, secret in wanted:
        if facts.offsite_files.get(path) == hashlib.sha256(content.encode()).hexdigest():
            done.append(path)
            continue
        if secret:  # the keys and the passphrase travel on stdin, never in a command line
            write = configs.write_secret(path, content, owner, mode, SECRET_CONF)
        else:
            write = configs.write_file(path, content, owner, mode)
        steps.append(Step(f"write {path}", write))
    assert repo.s3 is not None
    hint = f"check that {server} reaches {repo.s3.endpoint} and that the keys are right"
    more, also = offsite.keep_steps(a, facts, hosted.stanzas.get(app), hint)
    steps += more
    done += also
    return Plan(host=server, title=f"keep {app} in off-host repo {repo.name}", steps=tuple(steps), done=tuple(done))


def ca_text(repo: Repo) -> str | None:
    assert repo.s3 is not None
    return repo.s3.ca_file.read_text(encoding="utf-8") if repo.s3.ca_file else None


def preflight(session: HostSession, repo: Repo, server: str) -> HostedRepo:
    """Refuse, before anything changes, missing credentials, a bucket the server cannot read, or
    a passphrase that is missing or wrong for the backups the server's prefix already holds."""
    keys = repo.credentials()
    existing = passphrases.read(repo.name)
    conf = repo_conf(repo, server, 1, existing or "", keys)
    if existing is None:  # the listing of what the bucket holds needs no passphrase
        conf = "\n".join(line for line in conf.splitlines() if not line.startswith("repo1-cipher")) + "\n"
    hosted = read_state(session, repo, server, conf, ca_text(repo))
    check_passphrase(repo, server, hosted, existing)
    return hosted


def attach(
    session: HostSession,
    facts: ServerFacts,
    a: offsite.Attach,
    console: Console,
    *,
    dry_run: bool = False,
    hosted: HostedRepo | None = None,
) -> tuple[StanzaInfo | None, bool]:
    """Bring app a.app into S3 repo a.repo: its config, a stanza, shipping, a first backup.
    ``hosted``: what :func:`preflight` read of the bucket, when the caller already ran it.

    Returns the app's stanza in the repo afterwards, and whether anything was changed."""
    repo, server = a.repo, a.server.name
    existing = passphrases.read(repo.name)
    hosted = hosted or preflight(session, repo, server)
    keys = repo.credentials()
    ca = ca_text(repo)
    created = False
    if existing is None:
        secret = passphrases.create(repo.name) if not dry_run else "(a new passphrase)"
        created = not dry_run
    else:
        secret = existing
    plan = plan_attach(a, facts, hosted, repo_conf(repo, server, facts.cpu_count, secret, keys), ca)
    if dry_run:
        console.plan(plan.render())
        return None, False
    if created:
        console.warning(passphrases.made(repo.name))
    if not plan.empty:
        execute(plan, session, console)
    final = read_state(session, repo, server)
    return final.stanzas.get(a.app), not plan.empty


def passphrase_of(repo: Repo) -> str:
    """The repo's passphrase, which reading backups already in it needs; refused when missing."""
    secret = passphrases.read(repo.name)
    if secret is None:
        raise passphrases.missing(repo.name, "")
    return secret


def recover_conf(repo: Repo, source: str, cpu_count: int) -> str:
    """On a server that reads ``source``'s repository in the bucket (inv recover, a drill --on):
    its keys and the passphrase, and WAL fetched ahead in parallel, as for a repository host."""
    conf = repo_conf(repo, source, cpu_count, passphrase_of(repo), repo.credentials(), "recover")
    return conf + offsite.ASYNC_GET


def recover_steps(repo: Repo, source: str, cpu_count: int) -> list[Step]:
    """The CA, if any, and the config to read ``source``'s repository (on stdin: it holds secrets)."""
    conf = recover_conf(repo, source, cpu_count)
    path = offsite.recover_conf_path(repo.name, source)
    write = configs.write_secret(path, conf, "root:postgres", "0640", SECRET_CONF)
    steps = []
    if (ca := ca_text(repo)) is not None:
        steps.append(
            Step(f"write {ca_path(repo.name)}", configs.write_file(ca_path(repo.name), ca, "root:root", "0644"))
        )
    steps.append(Step(f"write {path} (to read {source}'s repository in {where(repo, source)})", write))
    return steps
