"""pitr: point-in-time restore of one app, beside the live cluster then a short swap, or --into a new app.

plan_pitr() is pure: facts + request -> PitrPlan (a Plan plus the words the
confirmation shows), or a Refusal before anything changes. The mutating phase
runs on the server as a detached job (see job.py); this module launches it,
re-attaches to it, and turns its journal into a summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .. import configs, server_code
from ..command import Command
from ..console import Console
from ..errors import Refusal
from ..facts import BackupInfo, ClusterFacts, ServerFacts, gather
from ..inventory import Host
from ..job import JobSpec, JobState, commit_step
from ..plan import Plan, Step
from ..remote import HostSession, PasswordSource, ask_password
from ..runner import Confirmation, HostJob, OnHost, Prepared, Report, follow, goes_on, launch, outcome_error
from . import restore
from .restore import Paths

POINTS_DIR = "/var/lib/pgmam/restore-points"


@dataclass(frozen=True)
class PitrRequest:
    app: str
    to: datetime | None = None  # a time target ...
    point: str | None = None  # ... or a named restore point
    stop_first: bool = False
    into: str | None = None
    port: int | None = None
    keep_failed: bool = False
    branch: bool = False  # the --into app is a branch of app (dropcluster keeps them together)

    @property
    def target_text(self) -> str:
        if self.point:
            return f"restore point {self.point}"
        return self.to.isoformat() if self.to else "now"

    @property
    def mode(self) -> str:
        return "into" if self.into else "stop-first" if self.stop_first else "beside"


@dataclass(frozen=True)
class PitrPlan:
    plan: Plan
    spec: JobSpec
    words: list[str] = field(default_factory=list)  # the plan in plain words, for the confirmation


def resolve_target(host: str, facts: ServerFacts, req: PitrRequest) -> tuple[datetime, list[str]]:
    """The time used to pick a backup, and pgBackRest's target options. Refuses impossible targets."""
    if req.point:
        points = [p for p in facts.points_for(req.app) if p.name == req.point]
        if not points:
            known = ", ".join(p.name for p in facts.points_for(req.app)) or "none"
            raise Refusal(
                f"{host}: {req.app} has no restore point named {req.point!r} (known: {known})",
                hint=f"create one before risky changes: inv restore-point --host {host} --app {req.app} --name NAME",
            )
        return points[-1].time, ["--type=name", f"--target={req.point}"]
    if req.to is None:  # "now" (a branch of the current state): everything archived up to the server's now
        text = facts.now.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return facts.now, ["--type=time", f"--target={text}"]
    if req.to > facts.now:
        raise Refusal(
            f"{host}: target {req.to.isoformat()} is in the future (server time {facts.now.isoformat()})",
            hint="pick a time in the past; the server's clock is what counts",
        )
    text = req.to.astimezone(facts.now.tzinfo).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return req.to, ["--type=time", f"--target={text}"]


def source_cluster(host: str, facts: ServerFacts, app: str) -> ClusterFacts:
    """The app to copy from: its live cluster, or, for an app dropped with its backups kept, a
    stand-in built from its stanza (its PostgreSQL version, the timeline of its last backup)."""
    live = facts.cluster(app)
    if live is not None:
        cluster = restore.managed_cluster(host, facts, app)
        restore.require_running(host, cluster)
        return cluster
    stanza = facts.stanzas.get(app)
    if stanza is None or not stanza.exists or not stanza.backups or stanza.pg_version is None:
        return restore.managed_cluster(host, facts, app)  # refuses: no such app
    last = stanza.backups[-1]
    return ClusterFacts(
        version=stanza.pg_version,
        name=app,
        port=0,
        status="dropped",
        owner="postgres",
        data_dir=configs.data_dir(stanza.pg_version, app),
        log_file="",
        timeline=last.timeline,
    )


def plan_pitr(host: str, facts: ServerFacts, req: PitrRequest, who: str) -> PitrPlan:
    """Pure: every check, then the steps."""
    if req.into:
        cluster = source_cluster(host, facts, req.app)
    else:
        cluster = restore.managed_cluster(host, facts, req.app)
        restore.require_running(host, cluster)
    restore.check_no_conflict(host, facts, req.app)
    stanza = facts.stanzas.get(req.app)
    if stanza is None or not stanza.backups:
        raise Refusal(f"{host}: {req.app} has no backup", hint=f"inv initcluster --host {host} --app {req.app} ...")
    when, target_args = resolve_target(host, facts, req)
    backup = restore.choose_backup(host, cluster, stanza.backups, when, facts.gaps_for(req.app))
    restore.check_space(host, facts, cluster, backup)
    if cluster.status == "dropped" and when >= backup.stop and backup is stanza.backups[-1]:
        # nothing was archived after a dropped app's final backup: bring it back exactly as that backup
        target_args = ["--type=immediate"]
    else:
        target_args = [*target_args, f"--target-timeline={cluster.timeline or 1}"]
    stamp = restore.job_stamp(facts)
    if req.into:
        return _plan_into(host, facts, req, who, cluster, backup, target_args, stamp)

    paths = Paths(req.app, cluster.data_dir, stamp)
    port = restore.free_port(facts, 20000 + cluster.port % 10000)
    steps: list[Step] = [restore.archive_now_step(cluster)]
    if req.stop_first:
        steps.append(restore.stop_live_step(cluster))
    steps += restore.staging_steps(cluster, paths, backup, target_args, port, keep_failed=req.keep_failed)
    steps += restore.swap_steps(cluster, paths.staging, paths, already_stopped=req.stop_first)
    plan = Plan(host=host, title=f"pitr {req.app} to {req.target_text}", steps=tuple(steps), as_job=True)
    words = [
        f"Restore {req.app} on {host} to {req.target_text}, from backup {backup.label} "
        f"(ended {backup.stop.isoformat()}), following timeline {cluster.timeline}.",
        (
            f"{req.app} is stopped first (--stop-first): it is down for the whole restore."
            if req.stop_first
            else f"{req.app} keeps serving while the copy is restored and replayed beside it; "
            "then it stops for a short swap (about a second)."
        ),
        f"Its current data is preserved as {paths.preserved} (never deleted by pgmam; `inv rollback` swaps it back).",
        restore.swap_promise(req.app),
    ]
    return PitrPlan(plan, _spec(req, who, stamp, plan), words)


def _plan_into(
    host: str,
    facts: ServerFacts,
    req: PitrRequest,
    who: str,
    cluster: ClusterFacts,
    backup: BackupInfo,
    target_args: list[str],
    stamp: str,
) -> PitrPlan:
    new = req.into
    assert new is not None
    port = req.port or restore.free_port(facts, max(cluster.port, 5432) + 1)
    if facts.cluster(new) is not None:
        raise Refusal(f"{host}: a cluster named {new} already exists", hint="pick another --into name")
    if new in facts.stanzas and facts.stanzas[new].exists:
        raise Refusal(f"{host}: a pgBackRest stanza named {new} already exists", hint="pick another --into name")
    for other in facts.clusters:
        if other.port == port:
            raise Refusal(
                f"{host}: port {port} belongs to cluster {other.version}/{other.name}", hint="pick another --port"
            )
    if port in facts.listening_ports:
        raise Refusal(f"{host}: port {port} is already in use by a listening socket", hint="pick another --port")
    v = cluster.version
    data = configs.data_dir(v, new)
    log = f"/var/log/postgresql/postgresql-{v}-{new}.log"
    steps = [restore.archive_now_step(cluster)] if cluster.running else []
    steps += [
        Step(
            f"write stanza config {configs.stanza_conf_path(new)}",
            configs.write_file(
                configs.stanza_conf_path(new),
                configs.stanza_conf(new, v, port, parent=req.app if req.branch else None),
                "root:postgres",
                "0640",
            ),
            undo=Command.of("rm", "-f", "--", configs.stanza_conf_path(new)),
        ),
        Step(
            f"create cluster {v}/{new} on port {port}",
            Command.of("pg_createcluster", "--port", port, "--start-conf", "auto", v, new, "--", "--data-checksums"),
            undo=Command.of("pg_dropcluster", "--stop", v, new),
        ),
        Step(
            f"restore {req.app}'s backup {backup.label} into {data} (archiving off)",
            server_code.step("into-restore", req.app, data, backup.label, *target_args),
            long=True,
        ),
        Step(
            f"give {new} {req.app}'s config as it was at that backup (its snapshot)",
            server_code.step("apply-snapshot", req.app, new, v, port, backup.label),
        ),
        Step(f"start {new} and replay WAL to the target", Command.of("pg_ctlcluster", v, new, "start"), long=True),
        Step(
            "prove it (stopped at the target, out of recovery, new timeline)",
            server_code.step("prove-recovery", "/var/run/postgresql", port, log, cluster.timeline or 1, data),
            long=True,
        ),
        Step("remove recovery settings from the copy", server_code.step("clean-restored", data)),
        Step(
            f"enable WAL archiving to its own stanza {new}",
            configs.write_file(configs.pg_conf_path(v, new), configs.archive_conf(new), "postgres:postgres", "0644"),
        ),
        Step(f"restart {new} with archiving on", Command.of("pg_ctlcluster", v, new, "restart")),
        Step(
            f"create stanza {new}",
            server_code.step("create-stanza", new),
            undo=server_code.step("delete-stanza", new),
        ),
        Step(
            "archive the copy's timeline history into its stanza",
            server_code.step("push-history", new, data),
        ),
        Step(f"verify {new} accepts writes", server_code.step("verify-live", port, "any")),
        Step(
            "prove archiving and take its first full backup",
            server_code.step("backup", new, v, "full", "check"),
            long=True,
        ),
    ]
    plan = Plan(host=host, title=f"pitr {req.app} to {req.target_text} into {new}", steps=tuple(steps), as_job=True)
    words = [
        f"Create a new app {new} on {host} (port {port}) holding {req.app} as of {req.target_text}, "
        f"from backup {backup.label}.",
        (
            f"{req.app} was dropped; its kept backups are restored (nothing of {req.app} is changed). "
            if cluster.status == "dropped"
            else f"{req.app} keeps running and is not changed. "
        )
        + f"The copy never archives into {req.app}'s stanza: it gets its own stanza {new} and a first full backup.",
        f"Any failure removes {new} again.",
    ]
    return PitrPlan(plan, _spec(req, who, stamp, plan, lock_app=new), words)


def plan_sync(host: str, facts: ServerFacts, branch: str, who: str) -> PitrPlan:
    """Pure: replace a branch's data with its parent's current state, preserving the old data."""
    parent_name = facts.parents.get(branch)
    if parent_name is None:
        raise Refusal(f"{host}: {branch} is not a branch made by `inv branch`", hint="check --app and --name")
    child = restore.managed_cluster(host, facts, branch)
    parent = restore.managed_cluster(host, facts, parent_name)
    restore.require_running(host, parent)
    restore.check_no_conflict(host, facts, branch)
    stanza = facts.stanzas.get(parent_name)
    if stanza is None or not stanza.backups:
        raise Refusal(f"{host}: {parent_name} has no backup", hint=f"inv backup --host {host} --app {parent_name}")
    backup = restore.choose_backup(host, parent, stanza.backups, facts.now, facts.gaps_for(parent_name))
    restore.check_space(host, facts, parent, backup)
    text = facts.now.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    target_args = ["--type=time", f"--target={text}", f"--target-timeline={parent.timeline or 1}"]
    stamp = restore.job_stamp(facts)
    paths = Paths(branch, child.data_dir, stamp)
    port = restore.free_port(facts, 20000 + child.port % 10000)
    steps: list[Step] = [restore.archive_now_step(parent)]
    steps += restore.staging_steps(parent, paths, backup, target_args, port, keep_failed=False, push_history=False)
    # before it starts: it must not archive into the old stanza
    reset = Step(
        f"start stanza {branch} over (its data now has a new lineage)", server_code.step("reset-stanza", branch)
    )
    steps += restore.swap_steps(child, paths.staging, paths, already_stopped=not child.running, before_start=(reset,))
    plan = Plan(host=host, title=f"sync branch {branch} from {parent_name}", steps=tuple(steps), as_job=True)
    words = [
        f"Replace the data of branch {branch} on {host} with {parent_name} as of now (backup {backup.label} + WAL).",
        f"{parent_name} keeps running and is not changed; {branch} stops for a short swap.",
        f"{branch}'s current data is preserved as {paths.preserved}; its stanza starts over with a new full backup.",
    ]
    spec = JobSpec(
        op="sync",
        app=branch,
        job_id=f"sync-{branch}-{stamp}",
        holder=who,
        info={"target": "now", "mode": "sync"},
        plan=plan,
    )
    return PitrPlan(plan, spec, words)


def _spec(req: PitrRequest, who: str, stamp: str, plan: Plan, lock_app: str | None = None) -> JobSpec:
    app = lock_app or req.app
    target = f"point:{req.point}" if req.point else req.to.isoformat() if req.to else "now"
    info = {"target": target, "mode": req.mode, "source": req.app}
    return JobSpec(op="pitr", app=app, job_id=f"pitr-{app}-{stamp}", holder=who, info=info, plan=plan)


# -- running -----------------------------------------------------------------------------


@dataclass
class PitrSummary:
    host: str
    app: str
    target: str
    state: JobState
    goes_on: str | None = None  # the steps after the commit point, still running when it returned

    def lines(self) -> list[str]:
        notes = self.state.notes
        out = [f"target      {self.target}"]
        if "stop" in notes:
            out.append(f"stopped     {notes['stop'].replace('_', ' ')}")
        if "last_tx" in notes:
            out.append(f"last commit {notes['last_tx'].replace('_', ' ')}")
        if "live_timeline" in notes:
            out.append(f"timeline    {notes['live_timeline']}")
        if self.state.downtime is not None:
            out.append(f"downtime    {self.state.downtime:.2f} s")
        online = self.state.online_after
        if online is not None:
            out.append(f"online      {online:.1f} s after the start")
        if self.state.seconds is not None:
            out.append(f"total       {self.state.seconds:.1f} s")
        if "backup" in notes:
            out.append(f"new backup  {notes['backup']}")
        if self.goes_on:
            out.append(f"then        {self.goes_on}")
        return out


class Pitr(OnHost):
    """One pitr (or branch) on one host: facts -> (re-attach | plan -> confirm -> job). One SSH
    connection throughout. An operation for runner.run."""

    def __init__(self, host: Host, req: PitrRequest, password_source: PasswordSource = ask_password):
        super().__init__(host, password_source)
        self.req = req
        self.facts: ServerFacts | None = None
        self.prepared: PitrPlan | None = None
        self.running_job: str | None = None  # a job for the same request already runs or ran: re-attach

    def prepare(self, *, dry_run: bool) -> None:
        """Facts; then the job to re-attach to, or the plan. A dry run changes nothing: not even
        what a killed job left is undone."""
        self.facts, _ = gather(self.session, recover=None if dry_run else self.req.app)
        lock_app = self.req.into or self.req.app
        lock = self.facts.lock(lock_app)
        if lock is not None and lock.alive and lock.info.get("op") == "pitr" and self._same_request(lock.info):
            self.running_job = f"/var/lib/pgmam/jobs/{lock.info['job']}"
            return
        last = self.facts.last_job(lock_app)
        # the same pitr finished, but its client never saw the end (the link dropped): show that result
        # rather than restoring again; once a client has seen the result, the same command runs anew
        same = last is not None and last.op == "pitr" and self._same_request(last.info)
        unseen = same and last.info.get("reported") == "no"
        # ... unless it never ran to the end (undone after a crash): then it runs anew
        ended = last is not None and last.result not in ("none", "recovered", "recovery-failed")
        if unseen and ended and lock is None and self._recent(last.job_id):
            self.running_job = last.dir
            return
        self.prepared = plan_pitr(self.host.name, self.facts, self.req, restore.holder())

    def render(self) -> list[str]:
        if self.running_job:
            return [
                f"the same pitr already ran or runs on {self.host.name}: a real run re-attaches to {self.running_job}"
            ]
        assert self.prepared is not None
        return self.prepared.plan.render()

    def confirmations(self) -> list[Confirmation]:
        if self.prepared is None:
            return []  # re-attaching changes nothing
        return [Confirmation(tuple(self.prepared.words), self.req.app)]

    def _same_request(self, info: dict[str, str]) -> bool:
        if not self.req.point and not self.req.to:
            return False  # "now" is a new moment every time
        target = f"point:{self.req.point}" if self.req.point else self.req.to.isoformat()  # type: ignore[union-attr]
        return info.get("target") == target and info.get("mode") == self.req.mode

    def _recent(self, job_id: str) -> bool:
        """A finished identical job from the last 10 minutes: a re-run after a dropped link, not a new request."""
        assert self.facts is not None
        try:
            started = datetime.strptime(job_id.rsplit("-", 1)[-1], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=self.facts.now.tzinfo
            )
        except ValueError:
            return False
        return (self.facts.now - started).total_seconds() < 600

    def run(self, console: Console) -> Report:
        if self.running_job:
            console.info(f"re-attaching to {self.running_job}")
            state = follow(self.session, self.running_job, console)
            summary = self._finish(state, self.running_job)
        else:
            assert self.prepared is not None
            spec = self.prepared.spec
            launch(self.session, spec)
            state = follow(self.session, spec.dir, console, commit_step(spec.plan))
            summary = self._finish(state, spec.dir)
            summary.goes_on = goes_on(spec, state)
        app, target = summary.app, summary.target
        if self.req.branch:
            headline = f"branch {app} of {self.req.app} on {self.host.name} is ready (as of {target})"
        else:
            headline = f"{app} on {self.host.name} restored to {target}"
        return Report([headline], summary.lines())

    def _finish(self, state: JobState, job_dir: str) -> PitrSummary:
        app = self.req.into or self.req.app
        if state.result != "ok" and not state.returned:
            raise outcome_error(self.host.name, app, state, f"job journal: {job_dir}/journal")
        return PitrSummary(self.host.name, app, self.req.target_text, state)


class Sync(HostJob):
    """inv branch --sync: a branch gets its parent's current data."""

    def __init__(self, host: Host, branch: str) -> None:
        super().__init__(host)
        self.app = branch

    def plan(self, facts: ServerFacts) -> Prepared:
        sync = plan_sync(self.host.name, facts, self.app, restore.holder())
        return Prepared(
            sync.spec, (Confirmation(tuple(sync.words), self.app),), f"rolled back: {self.app} runs on its data"
        )

    def report(self, state: JobState) -> Report:
        return Report(
            [
                f"branch {self.app} on {self.host.name} now holds its parent's current data "
                f"(downtime {state.downtime or 0:.2f} s)"
            ]
        )


def create_restore_point(host: Host, app: str, name: str, console: Console) -> str:
    """Create a named restore point in app's WAL; returns its LSN."""
    with HostSession(host) as session:
        facts, _ = gather(session, recover=app)
        cluster = restore.managed_cluster(host.name, facts, app)
        restore.require_running(host.name, cluster)
        if any(p.name == name for p in facts.points_for(app)):
            raise Refusal(f"{host.name}: {app} already has a restore point named {name!r}", hint="pick another name")
        result = session.run(server_code.step("create-point", cluster.port, app, name))
        return result.stdout.strip().splitlines()[-1]
