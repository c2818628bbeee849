"""health: what needs attention on a server, from its facts. The one judge of pgmam.

`inv status`, `inv check` and the watchdog on each server (watchdog.py) all decide with
:func:`assess`: a server's facts (facts.py), and what its off-host repos' hosts report, in; a
:class:`HostStatus` with the problems of the server and of each app out. Pure, and standard
library only: the watchdog imports it on servers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .errors import PgmamError
from .facts import BackupInfo, ClusterFacts, DrillResult, PreservedDir, ServerFacts, StanzaInfo
from .server_code import VERSION as SERVER_CODE
from .timetable import last_run, next_run, parse_calendar, split_kind, what
from .window import in_repo, recovery_window

if TYPE_CHECKING:
    from .inventory import Host, Repo

BACKUP_MAX_AGE = timedelta(hours=26)
DISK_MIN_FREE_RATIO = 0.10
# WAL waiting longer than this for an off-host repo turns the app red (the shipper passes every 5 s);
# so does WAL waiting after the shipper failed to push it
OFFSITE_LAG_MAX = timedelta(minutes=5)
# scheduled work (a backup, a drill) that has not run this long after it was due is overdue
SCHEDULE_GRACE = timedelta(hours=1)
# a filesystem that will be full this soon at the rate it filled lately needs attention; the rate
# is the watchdog's, from its samples of the last FORECAST_SPAN (at least FORECAST_MIN_SPAN of them)
DISK_FULL_WITHIN = timedelta(hours=24)
FORECAST_SPAN = timedelta(hours=6)
FORECAST_MIN_SPAN = timedelta(minutes=30)


@dataclass(frozen=True)
class Limits:
    """How the checks are tuned: [watchdog] grace and full_within in the inventory."""

    grace: timedelta = SCHEDULE_GRACE
    full_within: timedelta = DISK_FULL_WITHIN


def forecast(samples: list[tuple[float, int]]) -> dict[str, float | None] | None:
    """Pure: (epoch, free bytes) samples of one filesystem -> its free bytes, how fast it fills
    (bytes per hour, least squares) and the hours until it is full at that rate (None when it
    is not filling); None when the samples span less than FORECAST_MIN_SPAN."""
    if len(samples) < 3 or samples[-1][0] - samples[0][0] < FORECAST_MIN_SPAN.total_seconds():
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_f = sum(f for _, f in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    slope = sum((t - mean_t) * (f - mean_f) for t, f in samples) / spread  # bytes per second
    free = samples[-1][1]
    per_hour = -slope * 3600
    hours = free / per_hour if per_hour > 0 else None
    return {
        "free_bytes": free,
        "bytes_per_hour": round(per_hour),
        "hours_left": None if hours is None else round(hours, 1),
    }


def disk_problems(forecasts: dict[str, dict], within: timedelta) -> list[str]:
    """A filesystem that fills fast enough to be full within ``within``."""
    problems = []
    for mount, found in sorted(forecasts.items()):
        hours = found.get("hours_left")
        if hours is not None and hours * 3600 <= within.total_seconds():
            problems.append(
                f"disk {mount} will be full in about {_age(hours * 3600)} at the current rate "
                f"({_size(found.get('bytes_per_hour'))}/h; {_size(found.get('free_bytes'))} free)"
            )
    return problems


@dataclass(frozen=True)
class BackupRef:
    type: str
    label: str
    stop: str  # ISO-8601 UTC
    age_seconds: int


@dataclass(frozen=True)
class Archiving:
    ok: bool
    archived_count: int
    last_archived_wal: str | None
    last_archived_time: str | None
    last_archived_age_seconds: int | None
    failed_count: int
    last_failed_time: str | None


@dataclass(frozen=True)
class ClusterStatus:
    app: str
    version: int
    port: int
    status: str
    managed: bool
    in_recovery: bool | None
    timeline: int | None
    size_bytes: int | None
    data_dir: str
    backup_count: int
    last_backup: BackupRef | None
    last_full: BackupRef | None
    recovery_window: dict[str, object] | None
    archiving: Archiving | None
    # every pgmam-made data dir: old-/failed- kept by restores, staging-/verify- a job's working copy
    preserved: list[dict[str, object]] = field(default_factory=list)
    job: dict[str, object] | None = None  # a pitr/rollback job running right now
    schedule: list[dict[str, object]] = field(default_factory=list)  # type, calendar, next run
    last_scheduled: dict[str, object] | None = None
    last_proven_restorable: dict[str, object] | None = None  # the last `inv verify`
    last_job: dict[str, str] | None = None
    offsite: list[dict[str, object]] = field(default_factory=list)  # one per off-host repo (see offsite_status)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RepoView:
    """An off-host repo as status sees it: its repository host's facts (for an S3 repo, the server's
    own, holding what the bucket keeps: s3.as_vault), or why they are missing. Neither: not read
    (the watchdog judges what the server itself sees of the repo)."""

    repo: Repo
    facts: ServerFacts | None
    error: str | None = None


@dataclass(frozen=True)
class HostStatus:
    host: str
    address: str
    reachable: bool
    error: str | None = None
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    clusters: list[ClusterStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    remote_commands: int = 0
    seconds: float = 0.0
    # pgmam's server code there: current | older (the next job updates it) | none (no job yet)
    server_code: str | None = None

    @property
    def healthy(self) -> bool:
        return self.reachable and not self.problems and all(c.healthy for c in self.clusters)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _backup_ref(stanza: StanzaInfo | None, now: datetime, full: bool) -> BackupRef | None:
    found = (stanza.last_full if full else stanza.last) if stanza else None
    return _ref(found, now) if found else None


def _ref(found: BackupInfo, now: datetime) -> BackupRef:
    return BackupRef(found.type, found.label, found.stop.isoformat(), int((now - found.stop).total_seconds()))


def assess_cluster(
    cluster: ClusterFacts,
    facts: ServerFacts,
    repos: tuple[RepoView, ...] = (),
    server: str = "",
    grace: timedelta = SCHEDULE_GRACE,
) -> ClusterStatus:
    """Pure: one cluster's facts (and its off-host repos') -> its status and the problems that need attention."""
    managed = cluster.name in facts.managed_stanzas
    stanza = facts.stanzas.get(cluster.name) if managed else None
    last = _backup_ref(stanza, facts.now, full=False)
    archiver = cluster.archiver
    archiving = None
    if archiver is not None:
        archiving = Archiving(
            ok=not archiver.failing,
            archived_count=archiver.archived_count,
            last_archived_wal=archiver.last_archived_wal,
            last_archived_time=_iso(archiver.last_archived_time),
            last_archived_age_seconds=int((facts.now - archiver.last_archived_time).total_seconds())
            if archiver.last_archived_time
            else None,
            failed_count=archiver.failed_count,
            last_failed_time=_iso(archiver.last_failed_time),
        )
    problems: list[str] = []
    if managed:
        if not cluster.running and cluster.start == "auto":  # start.conf: manual or disabled is on purpose
            problems.append(f"cluster is {cluster.status}")
        if cluster.sql_error:
            problems.append(f"cannot query: {cluster.sql_error}")
        if cluster.recovering:
            problems.append("in recovery")
        if archiver is not None and archiver.failing:
            # the words stay the same while it keeps failing: an alert and status say the same
            ok_at = archiver.last_archived_time
            success = f"the last success at {ok_at.isoformat(timespec='seconds')}" if ok_at else "none archived yet"
            problems.append(f"WAL archiving failing at {archiver.last_failed_wal} ({success})")
        if last is None:
            problems.append("no backup")
        elif not _scheduled_backups(facts, cluster.name) and last.age_seconds > BACKUP_MAX_AGE.total_seconds():
            problems.append(f"last backup {_age(last.age_seconds)} ago")
        if stanza is not None and stanza.status_code not in (0, 2):
            problems.append(f"pgBackRest: {stanza.status_message}")
    lock = facts.lock(cluster.name)
    job = None
    if lock is not None:
        job = {"op": lock.info.get("op"), "job": lock.info.get("job"), "who": lock.info.get("who"), "alive": lock.alive}
    last_run = facts.last_job(cluster.name)
    last_job = None
    if last_run is not None:
        last_job = {"job": last_run.job_id, "op": last_run.op, "result": last_run.result}
        if last_run.result == "none":
            last_job["step"] = last_run.last_step
    problems += _job_problems(cluster, facts)
    schedule = []
    for entry in (e for e in facts.schedules if e.app == cluster.name):
        try:
            upcoming = next_run(parse_calendar(entry.calendar), facts).isoformat()
        except PgmamError:
            upcoming = None
        schedule.append({"type": entry.type, "calendar": entry.calendar, "next": upcoming})
    runs = [r for r in facts.scheduled_runs if r.app == cluster.name]
    last_scheduled = None
    if runs:
        run = runs[-1]
        last_scheduled = {
            "time": run.time.isoformat(),
            "type": run.type,
            "ok": run.exit_status == 0,
            "label": run.label,
            "seconds": run.seconds,
        }
    # the last run into each repo (local, each off-host one) decides: a good local backup does not
    # hide a failing off-host one
    last_per_repo = {(split_kind(r.type)[0], split_kind(r.type)[1] == "verify"): r for r in runs}
    for run in last_per_repo.values():
        if managed and run.exit_status not in (0, 75):  # 75: skipped, another job held the app
            problems.append(f"scheduled {what(run.type)} failed at {run.time.isoformat()} (see /var/log/pgmam)")
    drill = _last_drill(facts, cluster.name, None)
    proven = _proven(drill, facts.now) if drill else None
    if managed and drill is not None and not drill.ok:
        problems.append(f"restore drill of {drill.backup} FAILED at {drill.time.isoformat()}")
    preserved = [
        {
            "name": p.name,
            "path": p.path,
            "kind": p.kind,
            "size_bytes": p.size_bytes,
            "age_seconds": int((facts.now - p.mtime).total_seconds()),
        }
        for p in facts.preserved_for(cluster.version, cluster.name)
    ]
    problems += _leftover_problems(cluster, facts, lock is not None and lock.alive)
    if managed and not (lock is not None and lock.alive):
        problems += _overdue(cluster, facts, stanza, grace)
    recovery = recovery_window(cluster, stanza.backups if stanza else (), facts.gaps_for(cluster.name))
    window = recovery.json() if recovery.start else None
    if managed:  # a hole a backup has been taken after stays in the window (and the table) until it expires
        problems += [f"{b.describe()}; take a full backup now" for b in recovery.breaks if b.end is None]
    offsite = [offsite_status(cluster, facts, view, server) for view in repos] if managed else []
    for entry in offsite:
        problems += entry.pop("problems")  # type: ignore[arg-type]
    return ClusterStatus(
        app=cluster.name,
        version=cluster.version,
        port=cluster.port,
        status=cluster.status,
        managed=managed,
        in_recovery=cluster.in_recovery,
        timeline=cluster.timeline,
        size_bytes=cluster.size_bytes,
        data_dir=cluster.data_dir,
        backup_count=len(stanza.backups) if stanza else 0,
        last_backup=last,
        last_full=_backup_ref(stanza, facts.now, full=True),
        recovery_window=window,
        archiving=archiving,
        preserved=preserved,
        job=job,
        schedule=schedule,
        last_scheduled=last_scheduled,
        last_proven_restorable=proven,
        last_job=last_job,
        offsite=offsite,
        problems=problems,
    )


def _scheduled_backups(facts: ServerFacts, app: str) -> bool:
    """Does the app have scheduled local backups? (then they, not BACKUP_MAX_AGE, say when one is due)"""
    return any(e.app == app and e.type in ("full", "diff", "incr") for e in facts.schedules)


def _overdue(cluster: ClusterFacts, facts: ServerFacts, stanza: StanzaInfo | None, grace: timedelta) -> list[str]:
    """Scheduled work that was due more than ``grace`` ago and has not run: no record of a
    run of that kind since (nor, for a local backup, any backup that ended since; for a drill, any
    drill)."""
    app, problems = cluster.name, []
    for entry in (e for e in facts.schedules if e.app == app):
        try:
            due = last_run(parse_calendar(entry.calendar), facts)
        except (PgmamError, ValueError):
            continue
        if facts.now - due < grace or (entry.since is not None and entry.since > due):
            continue
        repo, kind = split_kind(entry.type)
        ran = any(r.app == app and r.type == entry.type and r.time >= due for r in facts.scheduled_runs)
        if kind == "verify":
            ran = ran or any(d.app == app and d.repo == repo and d.time >= due for d in facts.drills)
        elif repo is None and stanza is not None:
            ran = ran or any(b.stop >= due for b in stanza.backups if not b.error)
        if not ran:
            problems.append(
                f"scheduled {what(entry.type)} due at {due.isoformat()} has not run "
                f"(see systemctl list-timers 'pgmam-schedule-{app}-*', or /etc/cron.d/pgmam-{app})"
            )
    return problems


def _last_drill(facts: ServerFacts, app: str, repo: str | None) -> DrillResult | None:
    return next((d for d in reversed(facts.drills) if d.app == app and d.repo == repo), None)


def _proven(drill: DrillResult, now: datetime) -> dict[str, object]:
    return {
        "time": drill.time.isoformat(),
        "age_seconds": int((now - drill.time).total_seconds()),
        "ok": drill.ok,
        "backup": drill.backup,
        "tables": int(drill.tables) if drill.tables.isdigit() else None,
        "rows": int(drill.rows) if drill.rows.isdigit() else None,
        "amcheck": drill.amcheck,
        "seconds": drill.seconds,
        "on": drill.on,
    }


def offsite_status(cluster: ClusterFacts, facts: ServerFacts, view: RepoView, server: str) -> dict[str, object]:
    """Pure: one app in one off-host repo: its backups there, the WAL still waiting to be shipped, the
    recovery window there; with "problems", which the caller takes out."""
    app, repo = cluster.name, view.repo
    name = f"repo {repo.name} ({repo.where})"
    entry: dict[str, object] = {
        "repo": repo.name,
        "host": repo.host or None,
        "where": repo.where,
        "reachable": view.facts is not None,
    }
    problems: list[str] = []
    drill = _last_drill(facts, app, repo.name)
    entry["last_proven_restorable"] = _proven(drill, facts.now) if drill else None
    if drill is not None and not drill.ok:
        problems.append(f"{repo.name}: restore drill of {drill.backup} FAILED at {drill.time.isoformat()}")
    shipping = facts.shipping_of(repo.name, app)
    if shipping is None:
        problems.append(f"not kept in {name} yet: inv initcluster --host {server} --app {app} --port {cluster.port}")
    else:
        lag = int((facts.now - shipping.oldest).total_seconds()) if shipping.files and shipping.oldest else 0
        behind = lag > OFFSITE_LAG_MAX.total_seconds() or bool(shipping.error and shipping.files)
        entry["waiting"] = {"files": shipping.files, "bytes": shipping.bytes, "lag_seconds": lag, "behind": behind}
        entry["shipping_error"] = shipping.error or None
        if behind:
            why = f": {clip(shipping.error)}" if shipping.error else ""
            problems.append(
                f"{repo.name}: WAL {_age(lag)} behind ({shipping.files} files, {_size(shipping.bytes)} waiting){why}"
            )
        if facts.shipper not in ("active", "cron"):
            problems.append(
                f"the WAL shipper is not running ({facts.shipper or 'not installed'}): systemctl status pgmam-ship"
            )
    if view.facts is None:  # unreachable; or, on the server itself (the watchdog), not read from there
        if view.error is not None:
            problems.append(f"{name} unreachable: {view.error}")
        entry["problems"] = problems
        return entry
    hosted = view.facts.hosted.get(server)
    backups, recovery = in_repo(cluster, facts, view.facts, server, repo.name)
    last = backups[-1] if backups else None
    entry["backup_count"] = len(backups)
    entry["last_backup"] = asdict(_ref(last, view.facts.now)) if last else None
    if shipping is not None and not backups:
        problems.append(f"no backup in {name}: inv backup --host {server} --app {app} --repo {repo.name}")
    if hosted is not None and hosted.error:
        problems.append(f"{name}: pgbackrest info failed: {hosted.error}")
    entry["recovery_window"] = recovery.json() if recovery.start else None
    problems += [f"{repo.name}: {b.describe()}; take a full backup there now" for b in recovery.breaks if b.end is None]
    entry["problems"] = problems
    return entry


def assess(
    host: Host,
    facts: ServerFacts,
    remote_commands: int = 0,
    seconds: float = 0.0,
    repos: tuple[RepoView, ...] = (),
    *,
    watchdog: bool = True,
    limits: Limits = Limits(),
    forecasts: dict[str, dict] | None = None,
) -> HostStatus:
    """Pure: a host's facts (and those of its off-host repos) -> HostStatus. ``watchdog``: judge
    the server's watchdog too (it does not judge itself). ``forecasts``: each filesystem's
    (:func:`forecast`); by default what the watchdog last found."""
    problems = []
    disk = facts.data_disk
    if disk and disk.total_bytes and disk.free_bytes / disk.total_bytes < DISK_MIN_FREE_RATIO:
        problems.append(f"disk {disk.mount} has only {_size(disk.free_bytes)} free")
    if facts.pgbackrest_error and facts.managed_stanzas:
        problems.append(f"pgbackrest info failed: {facts.pgbackrest_error}")
    if watchdog:
        problems += watchdog_problems(facts)
    if forecasts is None:
        forecasts = facts.watchdog.disks if facts.watchdog else {}
    problems += disk_problems(forecasts, limits.full_within)
    return HostStatus(
        host=host.name,
        address=host.address,
        reachable=True,
        disk_free_bytes=disk.free_bytes if disk else None,
        disk_total_bytes=disk.total_bytes if disk else None,
        clusters=[assess_cluster(c, facts, repos, host.name, limits.grace) for c in facts.clusters],
        problems=problems,
        remote_commands=remote_commands,
        seconds=seconds,
        server_code=_server_code(facts),
    )


def watchdog_problems(facts: ServerFacts) -> list[str]:
    """A watchdog that stopped running, failed, or cannot deliver its alerts (none set up: none)."""
    record = facts.watchdog
    if record is None:
        return []
    problems = []
    if record.time is not None and facts.now - record.time > timedelta(seconds=3 * record.every_seconds + 60):
        problems.append(
            f"the watchdog has not run since {record.time.isoformat()} (systemctl status pgmam-watchdog.timer)"
        )
    if record.error:
        problems.append(f"the watchdog's last run failed: {clip(record.error)} (see /var/log/pgmam/watchdog.log)")
    for channel, last in sorted(record.channels.items()):
        if not last.get("ok"):
            problems.append(
                f"alerts cannot be delivered: {channel} {last.get('target')} {clip(str(last.get('error')))} "
                f"(at {last.get('time')}; see /var/log/pgmam/watchdog.log)"
            )
    return problems


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def clip(text: str, limit: int = 160) -> str:
    """A tool's error, long enough to say what failed (pgBackRest's S3 errors run to 400 chars)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _age(seconds: int | float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _working_copies(cluster: ClusterFacts, facts: ServerFacts) -> list[PreservedDir]:
    """A job's copies of the app's data (staging-*, verify-*), not the dirs kept on purpose."""
    return [p for p in facts.preserved_for(cluster.version, cluster.name) if p.kind in ("staging", "verify")]


def _described(copy: PreservedDir) -> str:
    return f"{copy.path} ({_size(copy.size_bytes)})"


def _leftover_problems(cluster: ClusterFacts, facts: ServerFacts, job_running: bool) -> list[str]:
    """A working copy with no job running and none to recover it."""
    if job_running or any(j.app == cluster.name and j.died for j in facts.jobs):
        return []
    return [
        f"leftover {_described(copy)}: remove it with sudo rm -rf -- {copy.path}"
        for copy in _working_copies(cluster, facts)
    ]


def _job_problems(cluster: ClusterFacts, facts: ServerFacts) -> list[str]:
    """What an app's jobs say is wrong: one that died (and what it left), or one left half undone."""
    app = cluster.name
    left = [_described(copy) for copy in _working_copies(cluster, facts)]
    problems = [
        f"job {run.job_id} died at step {run.last_step}"
        + (f", leaving {', '.join(left)}" if left else "")
        + f"; the next pgmam command on {app} undoes it"
        for run in facts.jobs
        if run.app == app and run.died
    ]
    last = facts.last_job(app)
    if last is not None and last.result in ("rollback-failed", "recovery-failed"):
        problems.append(f"job {last.job_id} failed and could not undo everything; see {last.dir}/journal")
    if last is not None and last.result == "interrupted":
        problems.append(
            f"{last.op} {last.job_id} was interrupted after {app} came back on its new data; "
            f"take a backup: inv backup --app {app}"
        )
    if last is not None and last.result == "incomplete":
        problems.append(
            f"{last.op} {last.job_id}: {app} runs on its new data, but step {last.last_step} failed after it; "
            f"see {last.dir}/journal, then take a backup: inv backup --app {app}"
        )
    return problems


def _server_code(facts: ServerFacts) -> str:
    if not facts.server_code:
        return "none"
    return "current" if facts.server_code == SERVER_CODE else "older"
