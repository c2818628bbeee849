"""recover: a lost server's apps rebuilt on another server, from an off-host repo.

The old server may be unreachable or gone: only the repository host and the new server are
contacted. For each app, a server job on the new server creates its cluster (same name and port,
or --port), restores it from the old server's repository on the repository host (at --to, or with
all the WAL the repo has), gives it the config its backup carries, proves it, and makes the new
server its home: a local stanza and a first full backup. Then, from here, the app is kept in the
off-host repo under the new server's own place, with a first full backup there. The old server's
backups in the repo are only read.

plan_app() is pure: the facts of both servers in, every refusal, then the job's steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .. import configs, passphrases, server_code
from ..command import Command
from ..console import Console
from ..errors import Refusal, UsageError
from ..facts import PGBACKREST_CONF, BackupInfo, ClusterFacts, HostedRepo, ServerFacts, gather
from ..inventory import Host, Inventory, Repo
from ..job import JobSpec, JobState
from ..plan import Plan, Step, execute
from ..remote import HostSession
from ..runner import Confirmation, Report, run_job
from . import offsite, restore, s3


@dataclass(frozen=True)
class RecoverRequest:
    source: str  # the lost server, as the inventory (and the repo) name it
    apps: tuple[str, ...] = ()  # () with all_apps: every app the repo keeps of it
    all_apps: bool = False
    to: datetime | None = None  # None: the newest point the repo has
    repo: str | None = None
    port: int | None = None  # only with one app


@dataclass(frozen=True)
class AppPlan:
    app: str
    version: int
    port: int
    backup: BackupInfo
    newest_wal: tuple[str, datetime] | None
    spec: JobSpec
    words: list[str]
    online_step: int  # the step after which the app serves (proven, accepting writes)


@dataclass
class Recovered:
    app: str
    port: int
    restored_to: str  # what recovery stopped at: the target, or the end of the archived WAL
    last_commit: str
    newest_wal: str
    seconds: float
    online_seconds: float | None = None  # from the job's start until the app served
    offsite_backup: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{self.app}: port {self.port}, serving after {self.online_seconds or 0:.1f} s, "
            f"secured (backups here and off-host) after {self.seconds:.1f} s",
            f"  restored to   {self.restored_to}",
            f"  last commit   {self.last_commit}",
            f"  newest WAL    {self.newest_wal} (what the repo had: anything after it is lost)",
            f"  off-host      {self.offsite_backup or '-'}",
        ]


def pick_repo(inventory: Inventory, new: Host, req: RecoverRequest) -> Repo:
    """The repo to recover from: --repo, else the old server's one repo. The new server must back
    up to it too: that is where its apps will be kept from now on."""
    if req.source == new.name:
        raise UsageError(f"--from {req.source} is the server to recover onto", hint="--host names the NEW server")
    if req.repo:
        repo = inventory.repo(req.repo)
    else:
        old = inventory.hosts.get(req.source)
        names = old.repos if old else ()
        if len(names) != 1:
            raise UsageError(
                f"{req.source} backs up to {len(names)} repos"
                if old
                else f"{req.source} is not in the inventory (any more)",
                hint="pass --repo NAME",
            )
        repo = inventory.repos[names[0]]
    if repo.name not in new.repos:
        raise Refusal(
            f"{new.name} does not back up to repo {repo.name}, where its recovered apps are to be kept",
            hint=f'add repos = ["{repo.name}"] to [hosts.{new.name}] (or to [defaults]) in {inventory.path}',
        )
    if repo.host == new.name:
        raise Refusal(f"{new.name} is repo {repo.name}'s repository host", hint="recover onto another server")
    return repo


def apps_to_recover(hosted: HostedRepo | None, repo: Repo, req: RecoverRequest) -> list[str]:
    kept = sorted(name for name, stanza in (hosted.stanzas if hosted else {}).items() if stanza.backups)
    if not kept:
        raise Refusal(
            f"repo {repo.name} on {repo.where} keeps no backup of {req.source}'s apps",
            hint="check --from (the lost server's inventory name) and --repo",
        )
    if req.all_apps:
        return kept
    unknown = [app for app in req.apps if app not in kept]
    if unknown:
        raise Refusal(
            f"repo {repo.name} keeps no backup of {', '.join(unknown)} from {req.source}",
            hint=f"it keeps: {', '.join(kept)}",
        )
    return list(req.apps)


def plan_app(
    new: str,
    facts: ServerFacts,
    hosted: HostedRepo,
    repo: Repo,
    req: RecoverRequest,
    app: str,
    who: str,
    ports: dict[str, int],
) -> AppPlan:
    """Pure: every refusal for one app, then its job. ``ports``: ports other apps of this same
    recover take (so two apps never get one port)."""
    stanza = hosted.stanzas[app]
    version = stanza.pg_version or 0
    if version not in facts.pg_versions:
        raise Refusal(
            f"{new}: {app} needs PostgreSQL {version}, which is not installed there",
            hint=f"apt-get install postgresql-{version} on {new}",
        )
    if facts.cluster(app) is not None or app in facts.managed_stanzas:
        raise Refusal(f"{new}: an app named {app} already exists there", hint="recover onto another server")
    if (local := facts.stanzas.get(app)) is not None and local.exists:
        raise Refusal(
            f"{new}: a pgBackRest stanza named {app} already exists there", hint="recover onto another server"
        )
    port = req.port or _old_port(hosted, app) or 5432
    taken = {c.port: f"cluster {c.version}/{c.name}" for c in facts.clusters}
    taken.update({p: f"app {other}, recovered now" for other, p in ports.items()})
    if port in taken or port in facts.listening_ports:
        who_has = taken.get(port, "a listening socket")
        raise Refusal(f"{new}: port {port} (the one {app} had) is taken by {who_has}", hint="pass --port")
    newest = hosted.newest.get(app)
    tl = int(stanza.wal_max[:8], 16) if stanza.wal_max else 1
    # the lost cluster as the repo knows it: its newest timeline, and which timelines led there
    lost = ClusterFacts(
        version,
        app,
        port,
        "lost",
        "postgres",
        configs.data_dir(version, app),
        "",
        timeline=tl,
        history=hosted.history.get(app, ()),
    )
    if req.to is not None and newest and req.to > newest[1]:
        raise Refusal(
            f"target {req.to.isoformat()} is after the newest WAL repo {repo.name} has of {app} "
            f"({newest[0]}, arrived {newest[1].isoformat(timespec='seconds')})",
            hint="pick an earlier --to, or leave it out to restore to the newest point",
        )
    # the newest point is where the repo's WAL ends: a hole on the way is refused, as for --to
    when = req.to or (newest[1] if newest else stanza.backups[-1].stop)
    gaps = [g for g in hosted.gaps if g.stanza == app]
    backup = restore.choose_backup(repo.where, lost, stanza.backups, when, gaps)
    if req.to is None:
        target: list[str] = []
        target_text = "the newest point the repo has"
    else:
        at = req.to.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        target = ["--type=time", f"--target={at}", "--target-timeline=latest"]
        target_text = req.to.isoformat()
    data = configs.data_dir(version, app)
    log = f"/var/log/postgresql/postgresql-{version}-{app}.log"
    conf = offsite.recover_conf_path(repo.name, req.source)
    steps = [
        Step(
            f"write stanza config {configs.stanza_conf_path(app)}",
            configs.write_file(
                configs.stanza_conf_path(app), configs.stanza_conf(app, version, port), "root:postgres", "0640"
            ),
            undo=Command.of("rm", "-f", "--", configs.stanza_conf_path(app)),
        ),
        Step(
            f"create cluster {version}/{app} on port {port}",
            Command.of("pg_createcluster", "--port", port, "--start-conf", "auto", version, app),
            undo=Command.of("pg_dropcluster", "--stop", version, app),
        ),
        Step(
            f"restore {app} from repo {repo.name} ({req.source}'s backups on {repo.where}) into {data}",
            server_code.step("recover-restore", conf, app, data, *target),
            long=True,
        ),
        Step(
            f"give {app} the config its backup carries",
            server_code.step("apply-snapshot", app, app, version, port, f"{data}/pgmam-config.tar.gz"),
        ),
        Step(f"start {app} and replay WAL", Command.of("pg_ctlcluster", version, app, "start"), long=True),
        Step(
            "prove it (out of recovery, on a new timeline, stopped where asked)",
            server_code.step(
                "prove-recovery", "/var/run/postgresql", port, log, tl, data, *(["end"] if req.to is None else [])
            ),
            long=True,
        ),
        Step("remove the recovery settings", server_code.step("clean-restored", data)),
        Step(
            f"enable WAL archiving to its stanza {app} here",
            configs.write_file(
                configs.pg_conf_path(version, app), configs.archive_conf(app), "postgres:postgres", "0644"
            ),
        ),
        Step(f"restart {app} with archiving on", Command.of("pg_ctlcluster", version, app, "restart")),
        Step(
            f"create stanza {app} here",
            server_code.step("create-stanza", app),
            undo=server_code.step("delete-stanza", app),
        ),
        Step("archive its timeline history into that stanza", server_code.step("push-history", app, data)),
        Step(f"verify {app} accepts writes", server_code.step("verify-live", port, "any")),
    ]
    online_step = len(steps)  # from here on the app serves; the rest secures it
    steps.append(
        Step(
            "prove archiving and take its first full backup here",
            server_code.step("backup", app, version, "full", "check"),
            long=True,
        )
    )
    stamp = restore.job_stamp(facts)
    plan = Plan(host=new, title=f"recover {app} from {req.source}", steps=tuple(steps), as_job=True)
    info = {"source": req.source, "repo": repo.name, "target": req.to.isoformat() if req.to else "newest"}
    spec = JobSpec(op="recover", app=app, job_id=f"recover-{app}-{stamp}", holder=who, info=info, plan=plan)
    words = [
        f"Rebuild {app} on {new} (PostgreSQL {version}, port {port}) from {req.source}'s backups in repo "
        f"{repo.name} on {repo.where}, to {target_text}: backup {backup.label}, then WAL"
        + (f" up to {newest[0]} (arrived {newest[1].isoformat(timespec='seconds')})." if newest else "."),
        f"{req.source}'s backups in the repo are only read. {new} becomes {app}'s home: a local stanza, "
        f"and repo {repo.name} under {new}'s own place, each with a first full backup.",
    ]
    return AppPlan(app, version, port, backup, newest, spec, words, online_step)


def _old_port(hosted: HostedRepo, app: str) -> int | None:
    """The port the app had on the old server, as its stanza config on the repository host says."""
    return hosted.ports.get(app)


def prepare_steps(
    new: Host, repo: Repo, source: str, facts: ServerFacts, vault: ServerFacts, home: bool = True
) -> list[Step]:
    """From here, before the jobs: the new server and the repository host trust each other, and the
    new server gets a config to read source's repo, and (``home``: it becomes the apps' home)
    pgBackRest's global config if it has none. An S3 repo needs no trust: its config holds keys."""
    steps: list[Step] = []
    if repo.s3 is None:
        steps, _ = offsite.trust_steps(new, repo, facts, vault, (offsite.Keys.of(facts), offsite.Keys.of(vault)))
    if home and facts.global_conf == "absent":
        steps.append(
            Step(
                "write pgBackRest global config",
                configs.write_file(PGBACKREST_CONF, configs.global_conf(facts.cpu_count), "root:postgres", "0640"),
            )
        )
    if repo.s3 is not None:
        return steps + s3.recover_steps(repo, source, facts.cpu_count)
    conf = offsite.recover_conf_path(repo.name, source)
    steps.append(
        Step(
            f"write {conf} (to read {source}'s repository on {repo.host})",
            configs.write_file(conf, offsite.recover_conf(repo, source), "root:postgres", "0640"),
        )
    )
    return steps


# -- running -----------------------------------------------------------------------------


class Recover:
    """Facts of the new server and the repository host, the plans, then (after the caller's
    confirmation) the jobs and the off-host attach. One SSH connection to each."""

    def __init__(self, inventory: Inventory, new: Host, req: RecoverRequest) -> None:
        self.inventory, self.new, self.req = inventory, new, req
        self.repo = pick_repo(inventory, new, req)
        self.session = HostSession(new)
        # an S3 repo is read from the new server itself
        self.vault_session = HostSession(inventory.host(self.repo.host)) if self.repo.s3 is None else None
        self.plans: list[AppPlan] = []

    def __enter__(self) -> Recover:
        if self.vault_session is not None:
            self.vault_session.open()
        self.session.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()
        if self.vault_session is not None:
            self.vault_session.close()

    def prepare(self, *, dry_run: bool) -> None:
        """Gather facts and plan every app (refusing before anything changes)."""
        if self.vault_session is not None:
            self.vault, _ = gather(self.vault_session, install=not dry_run)
            # the repo keeps the lost server's backups, so a missing passphrase is refused here too
            offsite.check_passphrase(self.repo, self.vault, passphrases.read(self.repo.name))
            self.facts, _ = gather(self.session, install=not dry_run)
        else:
            self.facts, _ = gather(self.session, install=not dry_run)
            self.vault = self._read_bucket()
        hosted = self.vault.hosted.get(self.req.source)
        apps = apps_to_recover(hosted, self.repo, self.req)
        if self.req.port and len(apps) > 1:
            raise UsageError("--port applies to one app", hint="recover the apps one by one, or leave --port out")
        assert hosted is not None
        who, ports = restore.holder(), {}
        for app in apps:
            plan = plan_app(self.new.name, self.facts, hosted, self.repo, self.req, app, who, ports)
            ports[app] = plan.port
            self.plans.append(plan)

    def confirmations(self) -> list[Confirmation]:
        return [Confirmation(tuple(line for plan in self.plans for line in plan.words), self.new.name)]

    def _read_bucket(self) -> ServerFacts:
        """What the S3 repo keeps of the lost server, read on the new one (which is unchanged)."""
        repo, source = self.repo, self.req.source
        conf = s3.recover_conf(repo, source, self.facts.cpu_count)
        hosted = s3.read_state(self.session, repo, source, conf, s3.ca_text(repo))
        s3.check_passphrase(repo, source, hosted, passphrases.read(repo.name))
        return s3.as_vault(self.facts, source, hosted)

    def render(self) -> list[str]:
        first = Plan(
            self.new.name, "prepare", tuple(prepare_steps(self.new, self.repo, self.req.source, self.facts, self.vault))
        )
        lines = first.render()
        for plan in self.plans:
            lines += plan.spec.plan.render()
            lines.append(f"  then: keep {plan.app} in repo {self.repo.name} (as inv initcluster does)")
        return lines

    def run(self, console: Console) -> Report:
        done = self.recover(console)
        lines = [line for item in done for line in item.lines()]
        return Report([f"{len(done)} app(s) of {self.req.source} recovered on {self.new.name}"], lines)

    def recover(self, console: Console) -> list[Recovered]:
        self.console = console
        others = {self.repo.host: self.vault_session} if self.vault_session is not None else {}
        if self.vault_session is not None and not (self.facts.user_key and self.vault.user_key):
            keys = offsite.key_steps(self.new.name, self.repo.host)
            execute(Plan(self.new.name, "SSH keys", tuple(keys)), self.session, self.console, others=others)
            self.facts, _ = gather(self.session)
            self.vault, _ = gather(self.vault_session)
        prep = prepare_steps(self.new, self.repo, self.req.source, self.facts, self.vault)
        execute(Plan(self.new.name, "prepare", tuple(prep)), self.session, self.console, others=others)
        done = []
        for plan in self.plans:
            started = time.monotonic()
            undone = f"everything was undone: nothing of {plan.app} is left on {self.new.name}"
            state = run_job(self.session, plan.spec, self.console, undone)
            facts, _ = gather(self.session)
            a = offsite.Attach(self.new, self.repo, plan.app, plan.version, plan.port)
            if self.repo.s3 is not None:
                stanza, _ = s3.attach(self.session, facts, a, self.console)
            else:
                stanza, _ = offsite.attach(self.session, facts, a, self.inventory, self.console)
            newest = (
                f"{plan.newest_wal[0]}, arrived {plan.newest_wal[1].isoformat(timespec='seconds')}"
                if plan.newest_wal
                else "-"
            )
            done.append(
                Recovered(
                    app=plan.app,
                    port=plan.port,
                    restored_to=state.notes.get("stop", "?").replace("_", " "),
                    last_commit=state.notes.get("last_tx", "none after the backup").replace("_", " "),
                    newest_wal=newest,
                    seconds=time.monotonic() - started,
                    online_seconds=_online_after(state, plan.online_step),
                    offsite_backup=f"repo {self.repo.name}: backup {stanza.last.label}"
                    if stanza and stanza.last
                    else None,
                    notes=state.notes,
                )
            )
        return done


def _online_after(state: JobState, step: int) -> float | None:
    done = state.steps.get(step)
    return done.ended - state.began if done and done.ended and state.began else None
