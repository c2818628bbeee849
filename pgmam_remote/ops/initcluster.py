"""initcluster: create one app's cluster, PITR-ready (archiving, stanza, first full backup).

plan_initcluster() is pure: facts + request -> Plan, or a Refusal before
anything changes. Steps already done on the server are skipped, so a re-run
after an interruption resumes, and a re-run on a finished app is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from .. import configs, server_code
from ..console import Console
from ..errors import Refusal
from ..facts import PGBACKREST_CONF, ServerFacts, StanzaInfo, backup_problem, gather, parse_pgbackrest_info
from ..inventory import Host, Inventory
from ..plan import Plan, Step, execute
from ..remote import POSTGRES, Command, HostSession, PasswordSource, ask_password
from . import offsite, restore, s3

BACKUP_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class InitClusterRequest:
    app: str
    port: int
    pg_version: int | None = None


@dataclass(frozen=True)
class ClusterSummary:
    host: str
    app: str
    version: int
    port: int
    data_dir: str
    stanza: str
    backup_label: str | None
    recovery_window_start: datetime | None
    already_done: bool
    offsite: tuple[tuple[str, str, str | None], ...] = ()  # (repo, repository host, last backup label)

    def lines(self) -> list[str]:
        window = self.recovery_window_start.isoformat() if self.recovery_window_start else "-"
        return [
            f"app        {self.app} on {self.host}",
            f"cluster    PostgreSQL {self.version}/{self.app}, port {self.port}",
            f"data dir   {self.data_dir}",
            f"stanza     {self.stanza}",
            f"backup     {self.backup_label or '-'}",
            *(f"off-host   repo {repo} on {host}: backup {label or '-'}" for repo, host, label in self.offsite),
            f"restorable from {window}",
        ]


PACKAGE_OF = {
    "pg_lsclusters": "postgresql-common",
    "pg_createcluster": "postgresql-common",
    "pg_ctlcluster": "postgresql-common",
    "pgbackrest": "pgbackrest",
    "ss": "iproute2",
}


def preflight(host: str, facts: ServerFacts, req: InitClusterRequest) -> int:
    """Every refusal, before any change. Returns the PostgreSQL major to use."""
    missing = sorted({PACKAGE_OF[t] for t, present in facts.tools.items() if t in PACKAGE_OF and not present})
    if missing:
        raise Refusal(f"{host}: {', '.join(missing)} not installed", hint=f"apt-get install {' '.join(missing)}")
    if not facts.pg_versions:
        raise Refusal(f"{host}: no PostgreSQL server is installed", hint="apt-get install postgresql")
    version = req.pg_version or facts.newest_pg
    assert version is not None
    if version not in facts.pg_versions:
        installed = ", ".join(map(str, facts.pg_versions))
        raise Refusal(
            f"{host}: PostgreSQL {version} is not installed (installed: {installed})",
            hint=f"apt-get install postgresql-{version}, or pass --pg-version {facts.newest_pg}",
        )

    restore.check_app_free(host, facts, req.app)
    existing = facts.cluster(req.app)
    if existing is not None:
        if req.app not in facts.managed_stanzas:
            raise Refusal(
                f"{host}: a cluster named {req.app} already exists ({existing.version}/{existing.name}, "
                f"port {existing.port}) and was not made by pgmam",
                hint="pick another app name",
            )
        if existing.port != req.port or existing.version != version:
            raise Refusal(
                f"{host}: app {req.app} already exists as PostgreSQL {existing.version} on port {existing.port}",
                hint=f"re-run with --port {existing.port} --pg-version {existing.version} to finish or check it",
            )
    else:
        stanza = facts.stanzas.get(req.app)
        if stanza is not None and stanza.exists:
            raise Refusal(
                f"{host}: a pgBackRest stanza named {req.app} already exists with "
                f"{len(stanza.backups)} backup(s) but there is no such cluster; it may hold a dropped app's backups",
                hint="pick another app name, or move that stanza away once you are sure it is not needed",
            )

    for other in facts.clusters:
        if other.name != req.app and other.port == req.port:
            raise Refusal(
                f"{host}: port {req.port} belongs to cluster {other.version}/{other.name} ({other.status})",
                hint="pick another --port; `inv status` lists the ports in use",
            )
    own_running = existing is not None and existing.running and existing.port == req.port
    if req.port in facts.listening_ports and not own_running:
        raise Refusal(
            f"{host}: port {req.port} is already in use by a listening socket",
            hint="pick another --port (see `ss -ltnp` on the server)",
        )
    recovering = [c for c in facts.clusters if c.recovering]
    if recovering:
        names = ", ".join(f"{c.version}/{c.name}" for c in recovering)
        raise Refusal(
            f"{host}: cluster(s) in recovery: {names}",
            hint="wait until recovery finishes (inv status), then re-run",
        )
    if facts.global_conf == "foreign":
        raise Refusal(
            f"{host}: {PGBACKREST_CONF} exists and was not written by pgmam",
            hint=f"move it aside (pgmam writes its own), or add the line '{configs.MARKER}' to adopt it as is",
        )
    return version


def plan_initcluster(host: str, facts: ServerFacts, req: InitClusterRequest) -> Plan:
    """Pure: the steps still missing to make app PITR-ready on this host."""
    version = preflight(host, facts, req)
    app, port = req.app, req.port
    cluster = facts.cluster(app)
    stanza = facts.stanzas.get(app)
    pgbackrest = ("pgbackrest", f"--stanza={app}")
    steps: list[Step] = []
    done: list[str] = []

    if facts.global_conf == "absent":
        steps.append(
            Step(
                "write pgBackRest global config",
                configs.write_file(PGBACKREST_CONF, configs.global_conf(facts.cpu_count), "root:postgres", "0640"),
            )
        )
    else:
        done.append(f"pgBackRest global config {PGBACKREST_CONF}")

    if app not in facts.managed_stanzas:
        steps.append(
            Step(
                f"write stanza config {configs.stanza_conf_path(app)}",
                configs.write_file(
                    configs.stanza_conf_path(app), configs.stanza_conf(app, version, port), "root:postgres", "0640"
                ),
            )
        )
    else:
        done.append(f"stanza config {configs.stanza_conf_path(app)}")

    if cluster is None:
        steps.append(
            Step(
                f"create cluster {version}/{app} on port {port} (data checksums)",
                Command.of(
                    "pg_createcluster", "--port", port, "--start-conf", "auto", version, app, "--", "--data-checksums"
                ),
                hint="re-run the same command to resume",
            )
        )
    else:
        done.append(f"cluster {version}/{app}")

    conf_missing = cluster is None or not cluster.pgmam_conf
    if conf_missing:
        steps.append(
            Step(
                f"enable WAL archiving ({configs.pg_conf_path(version, app)})",
                configs.write_file(
                    configs.pg_conf_path(version, app), configs.archive_conf(app), "postgres:postgres", "0644"
                ),
            )
        )
    else:
        done.append("WAL archiving config")

    expected_command = f"pgbackrest --stanza={app} archive-push %p"
    if cluster is None or not cluster.running:
        steps.append(Step(f"start cluster {version}/{app}", Command.of("pg_ctlcluster", version, app, "start")))
    elif conf_missing or cluster.archive_mode != "on" or cluster.archive_command != expected_command:
        steps.append(
            Step(f"restart {version}/{app} to turn archiving on", Command.of("pg_ctlcluster", version, app, "restart"))
        )
    else:
        done.append(f"cluster {version}/{app} running with archiving on")

    if stanza is None or not stanza.exists:
        steps.append(Step(f"create stanza {app}", server_code.step("create-stanza", app)))
    else:
        done.append(f"stanza {app}")

    if stanza is None or not stanza.backups:
        steps.append(
            Step(
                "prove WAL archiving works (pgbackrest check)",
                Command.of(*pgbackrest, "check", user=POSTGRES),
                hint=f"see /var/log/pgbackrest/{app}-check.log and the cluster log on the server",
            )
        )
        steps.append(
            Step(
                "first full backup",
                Command.of(*pgbackrest, "--type=full", "backup", user=POSTGRES, timeout=BACKUP_TIMEOUT_S),
                long=True,
                hint="re-run the same command to resume; pgBackRest resumes or restarts the backup",
            )
        )
        steps.append(Step("snapshot the cluster's config next to the backup", configs.snapshot(app, version)))
        steps.append(
            Step(
                "verify the backup is in the repository",
                Command.of(*pgbackrest, "--output=json", "info", user=POSTGRES),
                check=lambda result: backup_problem(app, result.stdout),
            )
        )
    else:
        done.append(f"{len(stanza.backups)} backup(s), last {stanza.backups[-1].label}")

    return Plan(host=host, title=f"initcluster {app}", steps=tuple(steps), done=tuple(done))


def summarize(
    host: str, req: InitClusterRequest, version: int, stanza: StanzaInfo | None, *, already: bool
) -> ClusterSummary:
    first, last = (stanza.first, stanza.last) if stanza else (None, None)
    return ClusterSummary(
        host=host,
        app=req.app,
        version=version,
        port=req.port,
        data_dir=configs.data_dir(version, req.app),
        stanza=req.app,
        backup_label=last.label if last else None,
        recovery_window_start=first.stop if first else None,
        already_done=already,
    )


def run(
    host: Host,
    req: InitClusterRequest,
    console: Console,
    *,
    inventory: Inventory | None = None,
    dry_run: bool = False,
    verbose: bool = False,
    password_source: PasswordSource = ask_password,
) -> ClusterSummary | None:
    """Facts -> plan -> (print | execute) on one host, then the same for each of its off-host repos.
    Returns the summary (None for --dry-run)."""
    repos = inventory.repos_of(host) if inventory else []
    for repo in repos:  # an unreachable repository host or a wrong passphrase: refused before any change
        if repo.s3 is None:
            offsite.preflight(repo, inventory, password_source)  # type: ignore[arg-type]
    with HostSession(host, password_source=password_source) as session:
        # an S3 repo is read from the server itself, once
        read = {repo.name: s3.preflight(session, repo, host.name) for repo in repos if repo.s3 is not None}
        summary = _run_local(session, host, req, console, dry_run=dry_run, verbose=verbose)
        if not repos:
            return summary
        facts, _ = gather(session)
        cluster = facts.cluster(req.app)
        version = cluster.version if cluster else (req.pg_version or host.pg_version or facts.newest_pg or 0)
        kept, changed = [], False
        for repo in repos:
            a = offsite.Attach(host, repo, req.app, version, req.port)
            if repo.s3 is not None:
                bucket = read[repo.name]
                stanza, ran = s3.attach(session, facts, a, console, dry_run=dry_run, verbose=verbose, hosted=bucket)
            else:
                stanza, ran = offsite.attach(
                    session,
                    facts,
                    a,
                    inventory,  # type: ignore[arg-type]
                    console,
                    dry_run=dry_run,
                    verbose=verbose,
                    password_source=password_source,
                )
            changed |= ran
            kept.append((repo.name, repo.where, stanza.last.label if stanza and stanza.last else None))
        if summary is None:
            return None
        return replace(summary, offsite=tuple(kept), already_done=summary.already_done and not changed)


def _run_local(
    session: HostSession, host: Host, req: InitClusterRequest, console: Console, *, dry_run: bool, verbose: bool
) -> ClusterSummary | None:
    facts, _ = gather(session, recover=None if dry_run else req.app)
    req = InitClusterRequest(req.app, req.port, req.pg_version or host.pg_version)
    plan = plan_initcluster(host.name, facts, req)
    version = req.pg_version or facts.newest_pg or 0
    if existing := facts.cluster(req.app):
        version = existing.version
    if dry_run:
        console.plan(plan.render())
        return None
    if plan.empty:
        return summarize(host.name, req, version, facts.stanzas.get(req.app), already=True)
    outcome = execute(plan, session, console, verbose=verbose)
    info = outcome.results[-1][1]
    stanza = parse_pgbackrest_info(info.stdout).get(req.app) if info.stdout.lstrip().startswith("[") else None
    if stanza is None:  # the plan ended before the info step (backups existed already)
        final = session.run(Command.of("pgbackrest", f"--stanza={req.app}", "--output=json", "info", user=POSTGRES))
        stanza = parse_pgbackrest_info(final.stdout).get(req.app)
    return summarize(host.name, req, version, stanza, already=False)
