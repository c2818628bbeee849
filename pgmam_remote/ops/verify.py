"""verify: a restore drill. Prove a backup restores, without touching the live cluster.

The newest backup (or the one for --to) is restored into a throwaway dir beside the live data,
a temporary local-only instance (no TCP, archiving off: it never writes to the stanza) replays
it and is promoted, then it is examined: every database accepts connections, pg_amcheck checks
heap and btree indexes when it is available, and every table is counted. The result is
recorded on the server (status shows "last proven restorable") and everything is torn down.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from .. import server_code
from ..command import Command
from ..console import Console
from ..errors import Refusal
from ..facts import BackupInfo, ClusterFacts, ServerFacts, WalGap, gather
from ..inventory import Host, Inventory, Repo
from ..job import LONG_STEP_DEADLINE_S, JobSpec, JobState
from ..plan import Plan, Step, execute
from ..remote import HostSession
from ..runner import Confirmation, HostJob, Prepared, Report, run_job
from ..window import usable_backups
from . import offsite, recover, restore, s3
from .restore import Paths

RESULTS_DIR = "/var/lib/pgmam/verify"


@dataclass(frozen=True)
class VerifyPlan:
    spec: JobSpec
    backup: str

    @property
    def plan(self) -> Plan:
        return self.spec.plan


@dataclass(frozen=True)
class FromRepo:
    """A drill that restores from an off-host repo: pgBackRest's config to read it, and the name
    its result is recorded under: APP@REPO beside the local drills' APP, or on another server
    APP@REPO@SERVER (that server's status never takes it for a drill of an app of its own)."""

    repo: str
    conf: str
    server: str | None = None  # the app's server, when the drill runs on another one

    def options(self, app: str, data: str, run: str) -> list[str]:
        """pgbackrest restore's options to read the repo, and the restore_command the replay uses:
        the same config, fetching WAL ahead (async) into the drill's own spool dir."""
        # on the app's own server its stanza config applies too; elsewhere --stanza and --pg1-path do
        config = [f"--config={self.conf}", *([] if self.server else ["--config-include-path=/etc/pgbackrest/conf.d"])]
        fetch = [*config, f"--stanza={app}", f"--pg1-path={data}", "--archive-async", f"--spool-path={run}/spool"]
        return [*config, f'--recovery-option=restore_command=pgbackrest {" ".join(fetch)} archive-get %f "%p"']

    def record(self, app: str) -> str:
        return f"{app}@{self.repo}" + (f"@{self.server}" if self.server else "")


def plan_verify(host: str, facts: ServerFacts, app: str, to: datetime | None, who: str) -> VerifyPlan:
    """Pure: checks, then the drill's steps. The live cluster is never stopped or written to."""
    cluster = restore.managed_cluster(host, facts, app)
    restore.check_no_conflict(host, facts, app)
    stanza = facts.stanzas.get(app)
    if stanza is None or not stanza.backups:
        raise Refusal(f"{host}: {app} has no backup to verify", hint=f"inv backup --host {host} --app {app}")
    backup, target_args, target = _pick(host, cluster, stanza.backups, facts.gaps_for(app), to, facts.now)
    restore.check_space(host, facts, cluster, backup)
    stamp = restore.job_stamp(facts)
    port = restore.free_port(facts, 30000 + cluster.port % 10000)
    steps = drill_steps(cluster, backup.label, stamp, port, target_args, target)
    return VerifyPlan(drill_spec(host, app, steps, target, backup.label, stamp, who), backup.label)


def plan_verify_repo(
    host: str,
    facts: ServerFacts,
    vault: ServerFacts,
    source: FromRepo,
    app: str,
    to: datetime | None,
    who: str,
    on: tuple[str, ServerFacts] | None = None,
) -> VerifyPlan:
    """Pure: a drill of app's backup in an off-host repo, on its own server or ``on`` another one
    (name, facts). The backups, and the holes in the WAL, are those the repository host has."""
    cluster = restore.managed_cluster(host, facts, app)
    where, here = on or (host, facts)
    restore.check_no_conflict(where, here, app)
    hosted = vault.hosted.get(host)
    stanza = hosted.stanzas.get(app) if hosted else None
    if stanza is None or not stanza.backups:
        raise Refusal(
            f"{host}: {app} has no backup in repo {source.repo}",
            hint=f"inv backup --host {host} --app {app} --repo {source.repo}",
        )
    if on is not None and cluster.version not in here.pg_versions:
        raise Refusal(
            f"{where}: PostgreSQL {cluster.version} is not installed, so it cannot run {app}'s data",
            hint=f"apt-get install postgresql-{cluster.version} on {where}, or drill on another server",
        )
    gaps = [g for g in hosted.gaps if g.stanza == app] if hosted else []
    backup, target_args, target = _pick(host, cluster, stanza.backups, gaps, to, facts.now)
    restore.check_space(where, here, cluster, backup)
    stamp = restore.job_stamp(here)
    port = restore.free_port(here, 30000 + cluster.port % 10000)
    steps = drill_steps(cluster, backup.label, stamp, port, target_args, target, source)
    spec = drill_spec(where, app, steps, target, backup.label, stamp, who)
    return VerifyPlan(replace(spec, info={**spec.info, "repo": source.repo, "from": host}), backup.label)


def _pick(
    host: str,
    cluster: ClusterFacts,
    backups: tuple[BackupInfo, ...],
    gaps: list[WalGap],
    to: datetime | None,
    now: datetime,
) -> tuple[BackupInfo, list[str], str]:
    """The backup a drill restores, pgBackRest's target options for it, and the target's name."""
    if to is not None:
        if to > now:
            raise Refusal(f"{host}: target {to.isoformat()} is in the future", hint="pick a time in the past")
        backup = restore.choose_backup(host, cluster, backups, to, gaps)
        text = to.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return backup, ["--type=time", f"--target={text}", f"--target-timeline={cluster.timeline or 1}"], to.isoformat()
    usable = usable_backups(cluster, backups) if cluster.timeline else list(backups)
    if not usable:
        raise Refusal(f"{host}: {cluster.name} has no backup on its current timeline", hint="take a backup first")
    return usable[-1], ["--type=immediate"], "latest"


def drill_steps(
    cluster: ClusterFacts,
    backup: str,
    stamp: str,
    port: int | str,
    target_args: list[str],
    target: str,
    source: FromRepo | None = None,
) -> list[Step]:
    """The drill itself: restore, start, prove, examine, tear down. Shared by `inv verify` and the
    scheduled drill, whose backup, stamp and port are placeholders the server fills in at run time.
    ``source``: restore from an off-host repo instead of the local one."""
    app, v = cluster.name, cluster.version
    paths = Paths(app, cluster.data_dir, stamp)
    conf = f"{cluster.config_dir}/postgresql.conf"
    record = source.record(app) if source else app
    options = [*(source.options(app, paths.drill, paths.run) if source else []), *target_args]
    origin = f" from repo {source.repo}" if source else ""
    return [
        Step(
            f"restore backup {backup}{origin} into {paths.drill}",
            server_code.step("restore-staging", app, paths.drill, backup, paths.run, port, conf, *options),
            long=True,
            undo=server_code.step("discard-drill", record, backup, target, paths.drill),
            undo_if_failed=True,
        ),
        Step(
            f"start a throwaway local-only instance on it (port {port}, no TCP, archiving off)",
            server_code.step("start-staging", v, paths.drill, paths.run, port, LONG_STEP_DEADLINE_S),
            long=True,
            undo=server_code.step("stop-instance", v, paths.drill, "immediate"),
        ),
        Step(
            "replay and prove it (stopped at the target, out of recovery)",
            server_code.step("prove-recovery", paths.run, port, f"{paths.run}/staging.log", 0, paths.drill),
            long=True,
        ),
        Step(
            "examine it: every database connects, pg_amcheck (heap + btree), row counts per table",
            server_code.step("drill", paths.run, port, v, record, backup, target),
            long=True,
        ),
        Step("stop the throwaway instance", server_code.step("stop-instance", v, paths.drill, "fast")),
        Step(f"remove {paths.drill}", Command.of("rm", "-rf", "--", paths.drill)),
    ]


def drill_spec(
    host: str, app: str, steps: list[Step], target: str, backup: str, stamp: str, who: str, mode: str = "drill"
) -> JobSpec:
    plan = Plan(host=host, title=f"verify {app} ({target}, backup {backup})", steps=tuple(steps), as_job=True)
    return JobSpec(
        op="verify",
        app=app,
        job_id=f"verify-{app}-{stamp}",
        holder=who,
        info={"target": target, "mode": mode},
        plan=plan,
    )


# -- the scheduled drill: rendered once by `inv schedule --verify`, filled in by the server ----------

# Placeholders in a scheduled job's script, replaced by the server's scheduled runner when it fires.
STAMP_SLOT, BACKUP_SLOT, PORT_SLOT = "@PGMAM_STAMP@", "@PGMAM_BACKUP@", "@PGMAM_PORT@"


def scheduled_drill_spec(host: str, cluster: ClusterFacts, repo: str | None = None) -> JobSpec:
    """Pure: the scheduled drill of the newest backup (in off-host repo ``repo``: on the app's own
    server, as `inv verify --repo` does), with placeholders for run-time facts.

    The scheduled runner does the preflight that `plan_verify` does here (a backup exists, free
    space for a restored copy, a free port) before it starts the job."""
    source = FromRepo(repo, offsite.repo_conf_path(repo)) if repo else None
    steps = drill_steps(cluster, BACKUP_SLOT, STAMP_SLOT, PORT_SLOT, ["--type=immediate"], "latest", source)
    spec = drill_spec(host, cluster.name, steps, "latest", BACKUP_SLOT, STAMP_SLOT, "schedule", mode="scheduled")
    return replace(spec, info={**spec.info, "repo": repo}) if repo else spec


# -- inv verify --repo: a drill from an off-host repo, on the app's server or another -------------


class RepoDrill:
    """Facts of the app's server, the repository host and (with ``on``) the server the drill runs
    on; the plan; then the job, and the result recorded on the app's server. One SSH connection
    to each."""

    def __init__(self, inventory: Inventory, host: Host, repo: Repo, app: str, to: datetime | None, on: Host | None):
        if repo.name not in host.repos:
            raise Refusal(
                f"{host.name} does not back up to repo {repo.name}",
                hint=f"its repos: {', '.join(host.repos) or 'none'} (hosts.toml)",
            )
        if on is not None and on.name == repo.host:
            raise Refusal(
                f"{on.name} is the repository host of repo {repo.name}: a drill there proves no restore elsewhere",
                hint="drill on another server (--on), or on the app's own (no --on)",
            )
        self.host, self.repo, self.app, self.to = host, repo, app, to
        self.on = on if on is not None and on.name != host.name else None
        self.session = HostSession(host)
        # an S3 repo is read on the app's own server
        self.vault_session = HostSession(inventory.host(repo.host)) if repo.s3 is None else None
        self.on_session = HostSession(self.on) if self.on else None
        conf = offsite.recover_conf_path(repo.name, host.name) if self.on else offsite.repo_conf_path(repo.name)
        self.source = FromRepo(repo.name, conf, host.name if self.on else None)

    def __enter__(self) -> RepoDrill:
        for session in (self.session, self.vault_session, self.on_session):
            if session is not None:
                session.open()
        return self

    def __exit__(self, *exc: object) -> None:
        for session in (self.on_session, self.vault_session, self.session):
            if session is not None:
                session.close()

    @property
    def drill_session(self) -> HostSession:
        return self.on_session or self.session

    def prepare(self, *, dry_run: bool) -> VerifyPlan:
        """Gather facts, refuse before anything changes, plan."""
        recover_jobs = None if dry_run else self.app  # an interrupted job of the app is undone first
        self.facts, _ = gather(self.session, recover=None if self.on_session else recover_jobs)
        if self.vault_session is not None:
            self.vault, _ = gather(self.vault_session)
        else:
            self.vault = s3.as_vault(self.facts, self.host.name, s3.read_state(self.session, self.repo, self.host.name))
        self.here = self.facts
        if self.on_session is not None:
            self.here, _ = gather(self.on_session, recover=recover_jobs, install=not dry_run)
        on = (self.on.name, self.here) if self.on else None
        self.prepared = plan_verify_repo(
            self.host.name, self.facts, self.vault, self.source, self.app, self.to, restore.holder(), on
        )
        return self.prepared

    def prepare_steps(self) -> list[Step]:
        """On another server: trust with the repository host and a config to read the app's repository."""
        if self.on is None:
            return []
        return recover.prepare_steps(self.on, self.repo, self.host.name, self.here, self.vault, home=False)

    def render(self) -> list[str]:
        lines = Plan(self.drill_session.host.name, "prepare", tuple(self.prepare_steps())).render() if self.on else []
        lines += self.prepared.plan.render()
        if self.on:
            lines.append(f"  then: record the result on {self.host.name}, where inv status shows it")
        return lines

    def confirmations(self) -> list[Confirmation]:
        return []  # a drill changes nothing that matters

    def run(self, console: Console) -> Report:
        undone = f"backup {self.prepared.backup} in repo {self.repo.name} did NOT prove restorable"
        session = self.drill_session
        if self.on is not None:
            others = {self.repo.host: self.vault_session} if self.vault_session is not None else {}
            if self.vault_session is not None and not (self.here.user_key and self.vault.user_key):
                keys = offsite.key_steps(self.on.name, self.repo.host)
                execute(Plan(self.on.name, "SSH keys", tuple(keys)), session, console, others=others)
                self.here, _ = gather(session)
                self.vault, _ = gather(self.vault_session)
            execute(Plan(self.on.name, "prepare", tuple(self.prepare_steps())), session, console, others=others)
        try:
            state = run_job(session, self.prepared.spec, console, undone)
        finally:
            if self.on is not None:
                self._record_on_server()
        where = f"from repo {self.repo.name}" + (f", on {self.on.name}" if self.on else "")
        return drill_report(self.host.name, self.app, f"{self.prepared.backup} {where}", state)

    def _record_on_server(self) -> None:
        """Copy the drill's result, ok or failed, to the app's server (with where it ran). A drill
        that ended before it got as far as a result leaves none: nothing is copied."""
        assert self.on_session is not None and self.on is not None
        there = f"{RESULTS_DIR}/{self.source.record(self.app)}"
        last = self.on_session.run(Command.of("tail", "-n", "1", there), check=False).stdout.strip()
        fields = last.split()
        if fields and fields[0].isdigit() and int(fields[0]) >= int(self.here.now.timestamp()):
            record = f"{self.app}@{self.repo.name}"
            self.session.run(server_code.step("add-drill-record", record, f"{last} {self.on.name}"))


class Drill(HostJob):
    """A drill of the app's local repo, on its own server."""

    def __init__(self, host: Host, app: str, to: datetime | None) -> None:
        super().__init__(host)
        self.app, self.to = app, to

    def plan(self, facts: ServerFacts) -> Prepared:
        self.drill = plan_verify(self.host.name, facts, self.app, self.to, restore.holder())
        undone = f"backup {self.drill.backup} did NOT prove restorable (the live cluster was not touched)"
        return Prepared(self.drill.spec, undone=undone)

    def report(self, state: JobState) -> Report:
        return drill_report(self.host.name, self.app, self.drill.backup, state)


def drill_report(host: str, app: str, backup: str, state: JobState) -> Report:
    notes = state.notes
    return Report(
        [
            f"{app} on {host}: backup {backup} restores: {notes.get('tables', '?')} tables, "
            f"{notes.get('rows', '?')} rows, amcheck {notes.get('amcheck', '?')} ({state.seconds or 0:.1f} s)"
        ]
    )
