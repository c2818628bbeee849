"""initcluster: create one app's cluster, PITR-ready (archiving, stanza, first full backup).

plan_initcluster() is pure: facts + request -> Plan, or a Refusal before
anything changes. Steps already done on the server are skipped, so a re-run
after an interruption resumes, and a re-run on a finished app is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Self

from .. import configs, server_code
from ..command import POSTGRES, Command
from ..console import Console, PlanRecorder
from ..errors import Refusal, RemoteCommandError
from ..facts import PGBACKREST_CONF, ServerFacts, StanzaInfo, backup_problem, gather, parse_pgbackrest_info
from ..inventory import Host, Inventory, Repo
from ..job import JOBS_DIR, JobSpec
from ..plan import Plan, Step
from ..remote import PasswordSource, ask_password
from ..runner import Confirmation, OnHost, Report, follow, outcome_error, run_job
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
    else:
        done.append(f"{len(stanza.backups)} backup(s), last {stanza.backups[-1].label}")

    return Plan(host=host, title=f"initcluster {app}", steps=tuple(steps), done=tuple(done), as_job=True)


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


class InitCluster(OnHost):
    """inv initcluster: the app's own part runs on the server as one job (the app's lock, a
    journal, an audit line); then each off-host repo of the host gets the app, from here (that
    reaches the repository host too). A re-run while the job still runs re-attaches to it, then does
    what is still missing. An operation for runner.run."""

    def __init__(
        self, inventory: Inventory, host: Host, req: InitClusterRequest, password_source: PasswordSource = ask_password
    ) -> None:
        super().__init__(host, password_source)
        self.inventory = inventory
        self.req = InitClusterRequest(req.app, req.port, req.pg_version or host.pg_version)
        self.repos = inventory.repos_of(host)
        self.password_source = password_source
        self.running_job: str | None = None

    def __enter__(self) -> Self:
        for repo in self.repos:  # an unreachable repository host or a wrong passphrase: refused before any change
            if repo.s3 is None:
                offsite.preflight(repo, self.inventory, self.password_source)
        super().__enter__()
        # an S3 repo is read from the server itself, once
        self.buckets = {r.name: s3.preflight(self.session, r, self.host.name) for r in self.repos if r.s3 is not None}
        return self

    def prepare(self, *, dry_run: bool) -> None:
        facts, _ = gather(self.session, recover=None if dry_run else self.req.app)
        lock = facts.lock(self.req.app)
        if lock is not None and lock.alive and lock.info.get("op") == "initcluster":
            self.running_job = f"{JOBS_DIR}/{lock.info['job']}"
            return
        self._plan(facts)

    def _plan(self, facts: ServerFacts) -> None:
        self.facts = facts
        self.plan = plan_initcluster(self.host.name, facts, self.req)
        existing = facts.cluster(self.req.app)
        self.version = existing.version if existing else self.req.pg_version or facts.newest_pg or 0

    def render(self) -> list[str]:
        if self.running_job:
            return [
                f"initcluster {self.req.app} runs on {self.host.name}: a real run re-attaches to {self.running_job}"
            ]
        recorder = PlanRecorder()
        for repo in self.repos:
            self._attach(repo, self.facts, recorder, dry_run=True)
        return self.plan.render() + recorder.lines

    def confirmations(self) -> list[Confirmation]:
        return []  # it creates; it loses nothing

    def run(self, console: Console) -> Report:
        app = self.req.app
        if self.running_job:  # the job does the whole plan: follow it to its end, then report
            console.info(f"re-attaching to {self.running_job}")
            state = follow(self.session, self.running_job, console)
            if state.result != "ok":
                where = f"job journal: {self.running_job}/journal"
                raise outcome_error(self.host.name, app, state, where, resumes=True)
            facts, _ = gather(self.session)  # what the job made
            existing = facts.cluster(app)
            self.version = existing.version if existing else self.req.pg_version or 0
            already = False
        else:
            facts, already = self.facts, self.plan.empty
            if not already:
                stamp = restore.job_stamp(self.facts)
                info = {"port": str(self.req.port), "version": str(self.version)}
                spec = JobSpec("initcluster", app, f"initcluster-{app}-{stamp}", restore.holder(), info, self.plan)
                run_job(self.session, spec, console, resumes=True)
                if self.repos:  # the off-host part reads what the job made
                    facts, _ = gather(self.session)
        final = self.session.run(Command.of("pgbackrest", f"--stanza={app}", "--output=json", "info", user=POSTGRES))
        problem = backup_problem(app, final.stdout)
        if problem:
            raise RemoteCommandError.of(f"{self.host.name}: {problem}", final)
        summary = summarize(
            self.host.name, self.req, self.version, parse_pgbackrest_info(final.stdout).get(app), already=already
        )
        if self.repos:
            kept, changed = [], False
            for repo in self.repos:
                stanza, ran = self._attach(repo, facts, console, dry_run=False)
                changed |= ran
                kept.append((repo.name, repo.where, stanza.last.label if stanza and stanza.last else None))
            summary = replace(summary, offsite=tuple(kept), already_done=already and not changed)
        where = f"{app} on {self.host.name}"
        done = f"{where} is already PITR-ready; nothing changed" if summary.already_done else f"{where} is PITR-ready"
        notes = []
        if facts.watchdog is None:
            name = self.host.name
            notes.append(f"no watchdog on {name} tells you when {app} stops being safe: inv watchdog --host {name}")
        return Report([done], summary.lines(), notes)

    def _attach(
        self, repo: Repo, facts: ServerFacts, console: Console, *, dry_run: bool
    ) -> tuple[StanzaInfo | None, bool]:
        """The app into one off-host repo: trust, configs, a stanza, shipping, a first backup."""
        a = offsite.Attach(self.host, repo, self.req.app, self.version, self.req.port)
        if repo.s3 is not None:
            return s3.attach(self.session, facts, a, console, dry_run=dry_run, hosted=self.buckets[repo.name])
        return offsite.attach(
            self.session, facts, a, self.inventory, console, dry_run=dry_run, password_source=self.password_source
        )
