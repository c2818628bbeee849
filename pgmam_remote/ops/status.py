"""status: the fleet at a glance. Never raises for one host: a failed probe is a row.

collect() runs the probe on every host in parallel (bounded pool, one SSH
connection and one remote command per host when sudo needs no password);
assess() is pure: facts -> HostStatus with the problems that need attention.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from rich.table import Table
from rich.text import Text

from ..console import Console
from ..errors import PgmamError
from ..facts import ServerFacts, gather
from ..health import ClusterStatus, HostStatus, Limits, RepoView, _age, _size, assess
from ..inventory import Host, Inventory
from ..remote import HostSession, PasswordSource, ask_password
from . import backup, offsite, s3
from .schedule import split_kind

MAX_PARALLEL = 16


def probe(host: Host, password_source: PasswordSource = ask_password) -> tuple[ServerFacts | None, str | None, int]:
    """Connect and probe: (facts, None, commands) or (None, the error, commands)."""
    session = None
    try:
        session = HostSession(host, password_source=password_source).open()
        facts, _ = gather(session)
        return facts, None, session.commands_run
    except PgmamError as exc:
        return None, exc.message, session.commands_run if session else 0
    finally:
        if session is not None:
            session.close()


def repo_views(inventory: Inventory, host: Host, session: HostSession, facts: ServerFacts) -> tuple[RepoView, ...]:
    """Each off-host repo of the host, one after another (status reads them all in parallel)."""
    views = []
    for repo in inventory.repos_of(host):
        if repo.s3 is not None:
            views.append(s3_view(session, facts, host.name, RepoView(repo, None)))
        else:
            vault, error, _ = probe(inventory.host(repo.host))
            views.append(RepoView(repo, vault, error))
    return tuple(views)


def s3_view(session: HostSession, facts: ServerFacts, server: str, view: RepoView) -> RepoView:
    """An S3 repo, read on the server itself (it reaches the bucket)."""
    if offsite.repo_conf_path(view.repo.name) not in facts.offsite_files:
        return RepoView(view.repo, None, f"not set up on {server} yet")
    hosted, why = s3.try_state(session, view.repo, server)
    return RepoView(view.repo, s3.as_vault(facts, server, hosted) if hosted else None, None if hosted else why)


def probe_host(
    host: Host,
    password_source: PasswordSource = ask_password,
    repos: tuple[RepoView, ...] = (),
    limits: Limits = Limits(),  # noqa: B008 -- frozen
) -> HostStatus:
    """Connect, probe, assess. Any PgmamError becomes an unreachable/error row."""
    started = time.monotonic()
    session = None
    try:
        session = HostSession(host, password_source=password_source).open()
        facts, _ = gather(session)
        repos = tuple(s3_view(session, facts, host.name, v) if v.repo.s3 else v for v in repos)
        return assess(host, facts, session.commands_run, time.monotonic() - started, repos, limits=limits)
    except PgmamError as exc:
        reachable = session is not None and session.connection.is_connected
        return HostStatus(
            host=host.name,
            address=host.address,
            reachable=reachable,
            error=exc.message,
            problems=[exc.message],
            remote_commands=session.commands_run if session else 0,
            seconds=time.monotonic() - started,
        )
    finally:
        if session is not None:
            session.close()


def collect(
    hosts: list[Host], password_source: PasswordSource = ask_password, inventory: Inventory | None = None
) -> list[HostStatus]:
    """Probe every host in parallel, bounded; results in inventory order. The repository hosts of
    their off-host repos are probed too, at the same time, each once."""
    if not hosts:
        return []
    repos = {name: inventory.repos[name] for h in hosts for name in h.repos} if inventory else {}
    vaults = sorted({repo.host for repo in repos.values() if repo.s3 is None})
    with ThreadPoolExecutor(max_workers=min(len(hosts) + len(vaults), MAX_PARALLEL)) as pool:
        vault_probes = {v: pool.submit(probe, inventory.hosts[v], password_source) for v in vaults}  # type: ignore[union-attr]

        def views(host: Host) -> tuple[RepoView, ...]:
            found = []
            for name in host.repos:
                if repos[name].s3 is not None:  # read on the host itself (probe_host)
                    found.append(RepoView(repos[name], None))
                    continue
                facts, error, _ = vault_probes[repos[name].host].result()
                found.append(RepoView(repos[name], facts, error))
            return tuple(found)

        limits = inventory.watch.limits() if inventory else Limits()
        return list(pool.map(lambda h: probe_host(h, password_source, views(h), limits), hosts))


def to_json(statuses: list[HostStatus]) -> dict[str, object]:
    hosts = []
    for status in statuses:
        row = asdict(status)
        row["healthy"] = status.healthy
        for cluster, raw in zip(status.clusters, row["clusters"], strict=True):
            raw["healthy"] = cluster.healthy
        hosts.append(row)
    return {"healthy": all(s.healthy for s in statuses), "hosts": hosts}


# -- rendering -------------------------------------------------------------------


def _next(c: ClusterStatus, backups: bool) -> str | None:
    """The next scheduled backup (or drill) as 'MM-DD HH:MM' UTC, or None."""
    upcoming = sorted(
        str(s["next"]) for s in c.schedule if s.get("next") and (split_kind(str(s["type"]))[1] != "verify") == backups
    )
    return _short_time(upcoming[0]) if upcoming else None


def _short_time(iso: str) -> str:
    """'2026-11-29T03:00:00+00:00' -> '11-29 03:00' (UTC)."""
    return iso[5:16].replace("T", " ")


def _cluster_row(c: ClusterStatus) -> list[Text | str]:
    state = Text(c.status + (" (recovery)" if c.in_recovery and "recovery" not in c.status else ""))
    state.stylize("ok" if c.status == "online" else "warn")
    cluster = Text.assemble(f"{c.version}:{c.port} ", state, f" TL{c.timeline or '-'} {_size(c.size_bytes)}")
    if not c.managed:
        return [Text(c.app), cluster, "-", "-", "-", Text("not managed by pgmam", style="dim")]
    backups = f"{c.backup_count}"
    if c.last_backup:
        backups += f", {c.last_backup.type} {_age(c.last_backup.age_seconds)} ago"
    if c.last_full and c.last_backup and c.last_full.label != c.last_backup.label:
        backups += f", full {_age(c.last_full.age_seconds)} ago"
    next_backup, next_drill = _next(c, backups=True), _next(c, backups=False)
    backups += f"\nnext {next_backup}" if next_backup else "\nnot scheduled"
    if c.archiving is None:
        wal = Text("-")
    elif c.archiving.ok:
        age = c.archiving.last_archived_age_seconds
        wal = Text(f"ok, {_age(age)} ago" if age is not None else "ok, none yet", style="ok")
    else:
        wal = Text(f"FAILING ({c.archiving.failed_count})", style="bad")
    for repo in c.offsite:
        backups += f"\n{_offsite_backups(repo)}"
        wal.append(f"\n{_offsite_wal(repo)}", style="ok" if _offsite_ok(repo) else "bad")
    restore = _proven_text(c.last_proven_restorable)
    if next_drill:
        restore.append(f"\nnext {next_drill}", style="dim")
    for repo in c.offsite:
        drilled = repo.get("last_proven_restorable")
        if drilled:
            restore.append(f"\n{repo['repo']}: ")
            restore.append_text(_proven_text(drilled))  # type: ignore[arg-type]
    for hole in (c.recovery_window or {}).get("breaks", []):  # type: ignore[union-attr]
        until = _short_time(hole["to"]) if hole["to"] else "now"
        restore.append(f"\nWAL hole {_short_time(hole['from'])} to {until}", style="bad")
    kept = [p for p in c.preserved if p["kind"] in ("old", "failed")]  # not a job's working copy
    if kept:
        total = sum(int(p["size_bytes"]) for p in kept)  # type: ignore[call-overload]
        restore.append(f"\n{len(kept)} kept ({_size(total)})", style="dim")
    health = Text("ok", style="ok") if c.healthy else Text("; ".join(c.problems), style="bad")
    if c.job and c.job.get("alive"):
        health.append(f" ({c.job['op']} running: {c.job['job']})", style="warn")
    return [Text(c.app), cluster, backups, wal, restore, health]


def _proven_text(proven: dict[str, object] | None) -> Text:
    if proven is None:
        return Text("never drilled", style="dim")
    if not proven["ok"]:
        return Text("drill FAILED", style="bad")
    on = f" on {proven['on']}" if proven.get("on") else ""
    took = f" in {_age(proven['seconds'])}" if proven.get("seconds") is not None else ""  # type: ignore[arg-type]
    return Text(f"proven {_age(proven['age_seconds'])} ago{on}{took}", style="ok")  # type: ignore[arg-type]


def _offsite_backups(repo: dict[str, object]) -> str:
    last = repo.get("last_backup")
    if not repo["reachable"]:
        return f"{repo['repo']}: ?"
    if not last:
        return f"{repo['repo']}: none"
    return f"{repo['repo']}: {last['type']} {_age(last['age_seconds'])} ago"  # type: ignore[index]


def _offsite_wal(repo: dict[str, object]) -> str:
    waiting = repo.get("waiting")
    if not waiting:
        return f"{repo['repo']}: not shipped"
    lag = waiting["lag_seconds"]  # type: ignore[index]
    if not lag:
        return f"{repo['repo']}: shipped"
    return f"{repo['repo']}: {_age(lag)} behind, {_size(waiting['bytes'])}"  # type: ignore[index]


def _offsite_ok(repo: dict[str, object]) -> bool:
    waiting = repo.get("waiting")
    return bool(waiting) and not waiting["behind"]  # type: ignore[index]


def render_table(statuses: list[HostStatus]) -> Table:
    table = Table(title="pgmam status", title_justify="left", header_style="bold")
    for column in ("host", "app", "cluster", "backups", "WAL archiving", "restores", "health"):
        table.add_column(column, no_wrap=column in ("host", "app", "cluster"))
    width = 6
    for status in statuses:
        if not status.reachable or status.error:
            error = Text(status.error or "unreachable", style="bad")
            table.add_row(Text(status.host, style="host"), *[""] * (width - 1), error, end_section=True)
            continue
        host = Text.assemble((status.host, "host"), (f"\n{_size(status.disk_free_bytes)} free", "dim"))
        if status.server_code == "older":
            host.append("\nolder pgmam server code\n(the next change updates it)", style="warn")
        rows = [_cluster_row(c) for c in status.clusters] or [[Text("no clusters", style="dim"), *[""] * (width - 1)]]
        for i, row in enumerate(rows):
            row = row[:width] if len(row) >= width else [*row[:-1], *[""] * (width - len(row)), row[-1]]
            table.add_row(host if i == 0 else "", *row, end_section=i == len(rows) - 1 and not status.problems)
        if status.problems:
            table.add_row("", *[""] * (width - 1), Text("; ".join(status.problems), style="bad"), end_section=True)
    return table


def show(statuses: list[HostStatus], console: Console, *, as_json: bool) -> bool:
    """Print the fleet (table or JSON). Returns True when everything is healthy."""
    if as_json:
        console.json(to_json(statuses))
    else:
        console.table(render_table(statuses))
    return all(s.healthy for s in statuses)


def show_backups(hosts: Inventory, host: Host, app: str, console: Console, *, as_json: bool) -> None:
    """inv backups: the app's backups and recovery window in the local repo, then in each off-host
    repo of its server (read on the repository host, or in the bucket)."""
    with HostSession(host) as session:
        facts, _ = gather(session)
        views = repo_views(hosts, host, session, facts)
    rows, window = backup.list_backups(host.name, facts, app)
    offsite = backup.list_offsite(host, facts, app, views)
    if as_json:
        console.json(backup.backups_json(app, rows, window, offsite))
        return
    console.table(backup.render_table(app, rows, window))
    for found in offsite:
        console.table(backup.render_offsite(app, found))
