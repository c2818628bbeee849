"""backup and backups: on-demand backups (each with its config snapshot), and the recovery window."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from .. import server_code
from ..command import Command
from ..console import Console
from ..errors import Refusal
from ..facts import BackupInfo, ClusterFacts, ServerFacts, ShipState, gather
from ..inventory import Host, Repo
from ..job import JobSpec
from ..plan import Plan, Step
from ..runner import Confirmation, OnHost, Report, run_job
from ..window import RecoveryWindow, in_repo, recovery_window, usable_backups
from . import restore

if TYPE_CHECKING:
    from ..health import RepoView

TYPES = ("full", "diff", "incr")
LABEL_TYPES = {"F": "full", "D": "diff", "I": "incr"}  # pgBackRest labels end with the type taken


def backup_command(app: str, version: int, backup_type: str, repo: str | None = None) -> Command:
    """A backup into the local repo, or into off-host repo ``repo`` (taken on its repository host)."""
    if repo:
        return server_code.step("repo-backup", repo, app, version, backup_type, timeout=None)
    return server_code.step("backup", app, version, backup_type, timeout=None)


def backup_title(app: str, kind: str, repo: str | None) -> str:
    return (
        f"{kind} backup of {app} into repo {repo}, with its config"
        if repo
        else f"{kind} backup of {app} and its config snapshot"
    )


def default_type(facts: ServerFacts, app: str, asked: str | None, repo: str | None = None) -> str:
    """The type asked for, checked; else incr once a full backup exists (off-host, pgBackRest turns
    an incr with no full before it into a full one), else full."""
    if asked:
        if asked not in TYPES:
            raise Refusal(f"backup type {asked!r} is not one of {', '.join(TYPES)}", hint="e.g. --type incr")
        return asked
    stanza = facts.stanzas.get(app)
    return "incr" if repo or (stanza is not None and stanza.last_full is not None) else "full"


def backup_spec(
    host: str, cluster: ClusterFacts, kind: str, stamp: str, who: str, mode: str, repo: str | None = None
) -> JobSpec:
    """Pure: one backup (local, or into off-host repo ``repo``) as a server-side job: the app's lock,
    a journal, an audit line."""
    app = cluster.name
    step = Step(backup_title(app, kind, repo), backup_command(app, cluster.version, kind, repo), long=True)
    plan = Plan(host=host, title=backup_title(app, kind, repo).partition(",")[0], steps=(step,), as_job=True)
    info = {"type": kind, "mode": mode, **({"repo": repo} if repo else {})}
    return JobSpec(op="backup", app=app, job_id=f"backup-{app}-{stamp}", holder=who, info=info, plan=plan)


def check_kept_in(host: str, repos: tuple[str, ...], facts: ServerFacts, app: str, repo: str) -> None:
    """Refuse a repo the host does not use (``repos``: the host's), or that does not keep the app yet."""
    if repo not in repos:
        raise Refusal(
            f"{host} does not back up to repo {repo}",
            hint=f"add it to repos in [hosts.{host}] (or [defaults]), then run inv initcluster for each app",
        )
    if facts.shipping_of(repo, app) is None:
        cluster = facts.cluster(app)
        port = f" --port {cluster.port}" if cluster else ""
        raise Refusal(
            f"{host}: app {app} is not kept in repo {repo} yet", hint=f"inv initcluster --host {host} --app {app}{port}"
        )


class Backup(OnHost):
    """inv backup: the named apps (None: every pgmam app on the host), into the local repo or into
    off-host repo ``repo``, one after another, each as a job. Every app is checked first."""

    def __init__(self, host: Host, apps: list[str] | None, backup_type: str | None, repo: str | None) -> None:
        super().__init__(host)
        self.apps, self.type, self.repo = apps, backup_type, repo

    def prepare(self, *, dry_run: bool) -> None:
        host = self.host.name
        recover = None if dry_run else self.apps[0] if self.apps and len(self.apps) == 1 else "--all"
        self.facts, _ = gather(self.session, recover=recover)
        facts = self.facts
        names = self.apps if self.apps is not None else sorted(facts.managed_stanzas & {c.name for c in facts.clusters})
        if not names:
            raise Refusal(f"{host}: no pgmam apps to back up", hint="create one with inv initcluster")
        self.specs = []
        for app in names:
            cluster = restore.managed_cluster(host, facts, app)
            restore.require_running(host, cluster)
            restore.check_app_free(host, facts, app)
            if self.repo:
                check_kept_in(host, self.host.repos, facts, app, self.repo)
            kind = default_type(facts, app, self.type, self.repo)
            stamp = restore.job_stamp(facts)
            self.specs.append(backup_spec(host, cluster, kind, stamp, restore.holder(), "on-demand", self.repo))

    def render(self) -> list[str]:
        return [line for spec in self.specs for line in spec.plan.render()]

    def confirmations(self) -> list[Confirmation]:
        return []  # a backup loses nothing

    def run(self, console: Console) -> Report:
        report = Report([])
        for spec in self.specs:
            state = run_job(self.session, spec, console)
            label = state.notes.get("backup", "?")
            kind = LABEL_TYPES.get(label[-1:], spec.info["type"])
            report.done.append(f"{spec.app}: {kind} backup {label} in {state.seconds or 0.0:.1f} s")
        return report


# -- backups: the list and the recovery window (pure) -----------------------------------------


@dataclass(frozen=True)
class BackupRow:
    label: str
    type: str
    start: str
    stop: str
    size_bytes: int
    repo_size_bytes: int
    wal_start: str | None
    wal_stop: str | None
    timeline: int | None
    restorable: bool  # on the live cluster's timeline history


def rows_of(cluster: ClusterFacts, backups: tuple[BackupInfo, ...]) -> list[BackupRow]:
    usable = {b.label for b in usable_backups(cluster, backups)} if cluster.timeline else {b.label for b in backups}
    return [
        BackupRow(
            label=b.label,
            type=b.type,
            start=b.start.isoformat(),
            stop=b.stop.isoformat(),
            size_bytes=b.size,
            repo_size_bytes=b.repo_size,
            wal_start=b.wal_start,
            wal_stop=b.wal_stop,
            timeline=b.timeline,
            restorable=b.label in usable,
        )
        for b in backups
    ]


def list_backups(host: str, facts: ServerFacts, app: str) -> tuple[list[BackupRow], RecoveryWindow]:
    cluster = restore.managed_cluster(host, facts, app)
    stanza = facts.stanzas.get(app)
    backups = stanza.backups if stanza else ()
    return rows_of(cluster, backups), recovery_window(cluster, backups, facts.gaps_for(app))


@dataclass(frozen=True)
class RepoBackups:
    """An app's backups in one off-host repo, or why they could not be read."""

    repo: Repo
    rows: list[BackupRow]
    window: RecoveryWindow | None
    waiting: ShipState | None
    error: str | None = None

    def json(self) -> dict[str, object]:
        waiting = self.waiting
        return {
            "repo": self.repo.name,
            "host": self.repo.host or None,
            "where": self.repo.where,
            "error": self.error,
            "waiting": {"files": waiting.files, "bytes": waiting.bytes} if waiting else None,
            "recovery_window": self.window.json() if self.window else None,
            "backups": [asdict(r) for r in self.rows],
        }


def list_offsite(host: Host, facts: ServerFacts, app: str, views: tuple[RepoView, ...]) -> list[RepoBackups]:
    """Pure: an app's backups in each off-host repo of its host; ``views``: health.RepoView of each."""
    cluster = restore.managed_cluster(host.name, facts, app)
    found = []
    for view in views:
        repo = view.repo
        waiting = facts.shipping_of(repo.name, app)
        if view.facts is None:
            found.append(RepoBackups(repo, [], None, waiting, view.error))
            continue
        backups, window = in_repo(cluster, facts, view.facts, host.name, repo.name)
        found.append(RepoBackups(repo, rows_of(cluster, backups), window, waiting))
    return found


def backups_json(
    app: str, rows: list[BackupRow], window: RecoveryWindow, offsite: list[RepoBackups]
) -> dict[str, object]:
    return {
        "app": app,
        "recovery_window": window.json(),
        "backups": [asdict(r) for r in rows],
        "offsite": [r.json() for r in offsite],
    }


def _short(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC") if iso else "-"


def render_table(app: str, rows: list[BackupRow], window: RecoveryWindow | None, notes: tuple[str, ...] = ()) -> Table:
    """The backups of one repo; ``app`` names it ("shop", "shop in repo vault (vault1)")."""
    start = _short(window.start.isoformat() if window and window.start else None)
    end = _short(window.end.isoformat() if window and window.end else None)
    table = Table(title=f"{app}: restorable from {start} to {end}", title_justify="left", header_style="bold")
    bad = [f"hole: {b.describe()}" for b in window.breaks] if window else []
    if bad or notes:
        table.caption = Text("\n".join(notes), style="dim")
        table.caption.append(("\n" if notes and bad else "") + "\n".join(bad), style="bad")
        table.caption_justify = "left"
    for column in ("label", "type", "finished", "TL", "size", "in repo", "restorable"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            r.label,
            r.type,
            _short(r.stop),
            str(r.timeline or "-"),
            f"{r.size_bytes / 1e6:.1f} MB",
            f"{r.repo_size_bytes / 1e6:.1f} MB",
            Text("yes", style="ok") if r.restorable else Text("no (abandoned timeline)", style="dim"),
        )
    return table


def render_offsite(app: str, found: RepoBackups) -> Table:
    notes = []
    if found.error:
        notes.append(f"unreachable: {found.error}")
    if found.waiting and found.waiting.files:
        notes.append(f"WAL waiting to be shipped here: {found.waiting.files} files, {found.waiting.bytes / 1e6:.1f} MB")
    title = f"{app} in repo {found.repo.name} ({found.repo.where})"
    return render_table(title, found.rows, found.window, tuple(notes))
