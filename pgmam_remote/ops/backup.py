"""backup and backups: on-demand backups (each with its config snapshot), and the recovery window."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from rich.table import Table
from rich.text import Text

from .. import server_code
from ..console import Console
from ..errors import Refusal
from ..facts import ClusterFacts, ServerFacts, gather
from ..inventory import Host
from ..job import JobSpec
from ..plan import Plan, Step
from ..remote import Command, HostSession
from . import restore

TYPES = ("full", "diff", "incr")


def backup_command(cluster: ClusterFacts, backup_type: str) -> Command:
    return server_code.step("backup", cluster.name, cluster.version, backup_type, timeout=None)


def default_type(facts: ServerFacts, app: str, asked: str | None) -> str:
    if asked:
        if asked not in TYPES:
            raise Refusal(f"backup type {asked!r} is not one of {', '.join(TYPES)}", hint="e.g. --type incr")
        return asked
    stanza = facts.stanzas.get(app)
    return "incr" if stanza is not None and stanza.last_full is not None else "full"


@dataclass(frozen=True)
class BackupDone:
    app: str
    type: str
    label: str
    seconds: float


def backup_spec(host: str, cluster: ClusterFacts, kind: str, stamp: str, who: str, mode: str) -> JobSpec:
    """Pure: one backup as a server-side job (the app's lock, a journal, an audit line)."""
    app = cluster.name
    step = Step(f"{kind} backup of {app} and its config snapshot", backup_command(cluster, kind), long=True)
    plan = Plan(host=host, title=f"{kind} backup of {app}", steps=(step,), as_job=True)
    return JobSpec(
        op="backup", app=app, job_id=f"backup-{app}-{stamp}", holder=who, info={"type": kind, "mode": mode}, plan=plan
    )


def apps_to_back_up(session: HostSession, apps: list[str] | None) -> tuple[ServerFacts, list[str]]:
    """The host's facts (their interrupted jobs recovered first), and the apps named, or every pgmam app."""
    facts, _ = gather(session, recover=apps[0] if apps and len(apps) == 1 else "--all")
    names = apps if apps is not None else sorted(facts.managed_stanzas & {c.name for c in facts.clusters})
    if not names:
        raise Refusal(f"{session.host.name}: no pgmam apps to back up", hint="create one with inv initcluster")
    return facts, names


def run_backups(host: Host, apps: list[str] | None, backup_type: str | None, console: Console) -> list[BackupDone]:
    """Back up the named apps (None: every pgmam app on the host), one after another, each as a job."""
    done = []
    with HostSession(host) as session:
        facts, names = apps_to_back_up(session, apps)
        specs = []
        for app in names:
            cluster = restore.managed_cluster(host.name, facts, app)
            restore.require_running(host.name, cluster)
            restore.check_app_free(host.name, facts, app)
            kind = default_type(facts, app, backup_type)
            specs.append(backup_spec(host.name, cluster, kind, restore.stamp(facts.now), restore.holder(), "on-demand"))
        for spec in specs:
            state = restore.run_job(session, spec, facts, console)
            done.append(BackupDone(spec.app, spec.info["type"], state.notes.get("backup", "?"), state.seconds or 0.0))
    return done


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


def list_backups(host: str, facts: ServerFacts, app: str) -> tuple[list[BackupRow], restore.RecoveryWindow]:
    cluster = restore.managed_cluster(host, facts, app)
    stanza = facts.stanzas.get(app)
    backups = stanza.backups if stanza else ()
    usable = (
        {b.label for b in restore.usable_backups(cluster, backups)} if cluster.timeline else {b.label for b in backups}
    )
    rows = [
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
    return rows, restore.recovery_window(cluster, backups, facts.gaps_for(app))


def backups_json(app: str, rows: list[BackupRow], window: restore.RecoveryWindow) -> dict[str, object]:
    return {
        "app": app,
        "recovery_window": window.json(),
        "backups": [asdict(r) for r in rows],
    }


def _short(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC") if iso else "-"


def render_table(app: str, rows: list[BackupRow], window: restore.RecoveryWindow) -> Table:
    start = _short(window.start.isoformat() if window.start else None)
    end = _short(window.end.isoformat() if window.end else None)
    table = Table(title=f"{app}: restorable from {start} to {end}", title_justify="left", header_style="bold")
    if window.breaks:
        table.caption = Text("\n".join(f"hole: {b.describe()}" for b in window.breaks), style="bad")
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
