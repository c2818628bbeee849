"""Read server state: one probe command plus pure parsers into dataclasses.

The probe is a constant POSIX shell script (server/probe.sh) run once as root; it prints
``@@section`` headers followed by raw tool output (pg_lsclusters, ss, df,
``pgbackrest info --output=json``, one JSON row per online cluster from
``psql -XAt``). :func:`parse_probe` turns that text into :class:`ServerFacts`;
it never raises on odd output: a probe that failed becomes an error field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import server_code
from .command import Command, sh

if TYPE_CHECKING:
    from .remote import HostSession

UTC = timezone.utc  # noqa: UP017 -- the watchdog runs this on servers, which may have Python 3.10
MARKER = "# managed by pgmam"
PGBACKREST_CONF = "/etc/pgbackrest/pgbackrest.conf"
PGBACKREST_CONF_D = "/etc/pgbackrest/conf.d"
DATA_ROOT = "/var/lib/postgresql"
REPO_PATH = "/var/lib/pgbackrest"

CLUSTER_SQL = """select json_build_object(
 'in_recovery', pg_is_in_recovery(),
 'timeline', case when pg_is_in_recovery()
     then (select timeline_id from pg_control_checkpoint())
     else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end,
 'size', (select sum(pg_database_size(oid))::bigint from pg_database),
 'start_time', extract(epoch from pg_postmaster_start_time()),
 'archive_mode', current_setting('archive_mode'),
 'archive_command', current_setting('archive_command'),
 'data_checksums', current_setting('data_checksums'),
 'archived_count', a.archived_count,
 'last_archived_wal', a.last_archived_wal,
 'last_archived_time', extract(epoch from a.last_archived_time),
 'failed_count', a.failed_count,
 'last_failed_wal', a.last_failed_wal,
 'last_failed_time', extract(epoch from a.last_failed_time))
from pg_stat_archiver a"""


def probe_command(recover: str | None = None, *, install: bool = False) -> Command:
    """The one command that gathers everything status and the planners need (server/probe.sh).

    ``recover``: an app (or ``--all``) about to be changed. The server code is installed first
    (see server_code.py), then that app's interrupted jobs are finished or undone, then the facts
    are read. ``install`` installs the code without recovering anything (a repository host)."""
    probe = sh(
        server_code.text("probe.sh"),
        CLUSTER_SQL,
        recover or "",
        server_code.text("wal-gaps.awk"),
        timeout=None if recover else 120,
    )
    return server_code.install_then(probe) if recover or install else probe


def parse_info(text: str) -> dict[str, str]:
    """'op=pitr app=shop who=a@b' -> dict (values never contain spaces)."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


# -- typed facts -------------------------------------------------------------


@dataclass(frozen=True)
class ArchiverStats:
    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None

    @property
    def failing(self) -> bool:
        """Archiving is failing when the last failure is newer than the last success."""
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time


@dataclass(frozen=True)
class ClusterFacts:
    version: int
    name: str
    port: int
    status: str  # as pg_lsclusters says: online, down, online,recovery, ...
    owner: str
    data_dir: str
    log_file: str
    pgmam_conf: bool = False  # conf.d/pgmam.conf present
    in_recovery: bool | None = None
    timeline: int | None = None
    size_bytes: int | None = None
    start_time: datetime | None = None
    archive_mode: str | None = None
    archive_command: str | None = None
    data_checksums: bool | None = None
    archiver: ArchiverStats | None = None
    sql_error: str | None = None
    history: tuple[tuple[int, int], ...] = ()  # ancestors of the newest timeline: (timeline, switch LSN)
    start: str = "auto"  # its start.conf: auto (started at boot), manual or disabled

    @property
    def running(self) -> bool:
        return self.status.startswith("online")

    @property
    def recovering(self) -> bool:
        return bool(self.in_recovery) or "recovery" in self.status

    @property
    def config_dir(self) -> str:
        return f"/etc/postgresql/{self.version}/{self.name}"


@dataclass(frozen=True)
class BackupInfo:
    label: str
    type: str
    start: datetime
    stop: datetime
    size: int
    repo_size: int
    wal_start: str | None
    wal_stop: str | None
    error: bool = False
    lsn_start: str | None = None
    lsn_stop: str | None = None
    annotation: tuple[tuple[str, str], ...] = ()  # pgBackRest's key/value annotations (--annotation)

    @property
    def timeline(self) -> int | None:
        return int(self.wal_start[:8], 16) if self.wal_start else None


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status_message: str
    backups: tuple[BackupInfo, ...] = ()
    wal_min: str | None = None
    wal_max: str | None = None
    backup_running: bool = False
    pg_version: int | None = None  # of the database the stanza backs up

    @property
    def exists(self) -> bool:
        """The stanza was created (codes 1 'missing stanza path' and 3 'missing stanza data' mean no)."""
        return self.status_code not in (1, 3)

    @property
    def last(self) -> BackupInfo | None:
        return self.backups[-1] if self.backups else None

    @property
    def last_full(self) -> BackupInfo | None:
        fulls = [b for b in self.backups if b.type == "full"]
        return fulls[-1] if fulls else None

    @property
    def first(self) -> BackupInfo | None:
        return self.backups[0] if self.backups else None


@dataclass(frozen=True)
class DiskFacts:
    mount: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class LockInfo:
    app: str
    alive: bool  # a live job holds it; otherwise it is stale and the next job takes it over
    info: dict[str, str]


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    app: str
    op: str
    # ok | rolled-back | failed | rollback-failed | incomplete (a step past its commit point failed; kept)
    # | locked | none (not ended), and after a crash:
    # recovered (undone) | interrupted (kept: past its commit point) | recovery-failed
    result: str
    info: dict[str, str]

    @property
    def running(self) -> bool:
        """Its runner is alive (it holds the job's flock)."""
        return self.info.get("running") == "yes"

    @property
    def committed(self) -> bool:
        """Past its commit point: the app runs on its new data; the job only finishes (a backup)."""
        return self.info.get("committed") == "yes"

    @property
    def last_step(self) -> str:
        """The step it started last: 'N title'."""
        return self.info.get("step", "-").replace("~", " ")

    @property
    def died(self) -> bool:
        """Neither ended nor running: killed (SIGKILL, the OOM killer) or cut off by a power loss."""
        return self.result == "none" and not self.running

    @property
    def dir(self) -> str:
        return f"/var/lib/pgmam/jobs/{self.job_id}"


@dataclass(frozen=True)
class PreservedDir:
    path: str
    size_bytes: int
    mtime: datetime

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def version(self) -> int:
        return int(self.path.rstrip("/").split("/")[-2])

    @property
    def kind(self) -> str:
        # old | failed: kept on purpose; staging | verify: a job's working copy
        return self.name.split("-", 1)[0]

    @property
    def app(self) -> str:
        return self.name.split("-", 1)[1].rsplit("-", 1)[0]


@dataclass(frozen=True)
class RestorePoint:
    app: str
    name: str
    time: datetime
    lsn: str


@dataclass(frozen=True)
class WalGap:
    """WAL segments missing from a stanza's archive, between two that are there.

    No restore can replay across it: targets after ``before_time`` need WAL that is gone, unless
    they start from a backup taken after the gap."""

    stanza: str
    archive_id: str  # e.g. 15-1 (PostgreSQL version and the stanza's database id)
    before: str  # the last segment archived before the hole
    after: str  # the first segment archived after it
    before_time: datetime  # when those two were archived
    after_time: datetime

    @property
    def missing(self) -> int:
        """How many segments are missing (16 MiB each)."""
        return segment_number(self.after) - segment_number(self.before) - 1


def segment_number(name: str) -> int:
    """A WAL segment's position on its timeline (16 MiB segments, 256 to a log file)."""
    return int(name[8:16], 16) * 256 + int(name[16:24], 16)


@dataclass(frozen=True)
class ScheduleEntry:
    app: str
    type: str
    calendar: str
    since: datetime | None = None  # when it was set (its timer's or cron file's mtime)


@dataclass(frozen=True)
class ScheduledRun:
    app: str
    time: datetime
    exit_status: int
    type: str
    label: str
    seconds: int


@dataclass(frozen=True)
class DrillResult:
    """The last `inv verify` of an app: did a backup restore and pass the checks?"""

    app: str
    time: datetime
    ok: bool
    backup: str
    tables: str
    rows: str
    amcheck: str
    repo: str | None = None  # a drill from an off-host repo (recorded as APP@REPO)
    seconds: int | None = None  # from the start of the restore to the end of the checks
    on: str | None = None  # the server it ran on, when not the app's own (`inv verify --repo --on`)


@dataclass(frozen=True)
class ShipState:
    """WAL of one app waiting on this server for one off-host repo (server/ship-wal.sh)."""

    repo: str
    app: str
    files: int  # local archive files not yet shipped
    bytes: int
    oldest: datetime | None  # when the oldest of them was archived locally
    last_ok: datetime | None  # the last pass that left nothing behind
    error: str  # the last failure ("" when the last pass succeeded)
    error_time: datetime | None = None


@dataclass(frozen=True)
class HostedRepo:
    """What a repository host keeps for one server: its stanzas (pgbackrest info) and WAL holes."""

    server: str
    stanzas: dict[str, StanzaInfo]
    gaps: tuple[WalGap, ...] = ()
    error: str | None = None
    cipher_sha256: str = ""
    newest: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # stanza -> newest segment, arrival
    ports: dict[str, int] = field(default_factory=dict)  # app -> its port on that server
    # stanza -> the ancestors of its newest timeline (from its history file in the repo), when not 1
    history: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    held: tuple[str, ...] = ()  # S3: the stanzas the repo holds, listed without the passphrase


@dataclass(frozen=True)
class WatchdogRecord:
    """The watchdog's last run on this server (watchdog.Run, as last.json keeps it)."""

    time: datetime | None  # None: it has not run yet
    every_seconds: int
    channels: dict[str, dict[str, object]]  # channel -> target (masked), ok, error, time
    error: str | None = None
    disks: dict[str, dict] = field(default_factory=dict)  # mount -> health.forecast()


@dataclass(frozen=True)
class ServerFacts:
    hostname: str
    now: datetime
    cpu_count: int
    systemd: bool
    tools: dict[str, bool]
    pg_versions: tuple[int, ...]
    listening_ports: frozenset[int]
    disks: tuple[DiskFacts, ...]
    global_conf: str  # absent | pgmam | foreign
    managed_stanzas: frozenset[str]
    clusters: tuple[ClusterFacts, ...]
    stanzas: dict[str, StanzaInfo] = field(default_factory=dict)
    pgbackrest_error: str | None = None
    locks: tuple[LockInfo, ...] = ()
    jobs: tuple[JobRecord, ...] = ()
    preserved: tuple[PreservedDir, ...] = ()
    restore_points: tuple[RestorePoint, ...] = ()
    schedules: tuple[ScheduleEntry, ...] = ()
    scheduled_runs: tuple[ScheduledRun, ...] = ()
    drills: tuple[DrillResult, ...] = ()
    parents: dict[str, str] = field(default_factory=dict)  # branch app -> the app it was branched from
    utc_offset_minutes: int = 0  # the server's local time zone (cron and systemd timers use it)
    server_code: str = ""  # hash of the pgmam server code installed there ("" before the first job)
    wal_gaps: tuple[WalGap, ...] = ()
    user_key: str = ""  # postgres's SSH public key ("" when it has none)
    host_key: str = ""  # this server's ed25519 host key
    trusted: frozenset[str] = frozenset()  # pgmam's lines: "known ADDRESS KEY", "authorized KEY"
    offsite_files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of pgmam's offsite configs
    shipper: str = ""  # active | inactive | failed | cron | "" (none installed)
    shipping: tuple[ShipState, ...] = ()
    hosted: dict[str, HostedRepo] = field(default_factory=dict)  # as a repository host: server -> its repo
    watchdog: WatchdogRecord | None = None  # None: no watchdog set up here

    def shipping_of(self, repo: str, app: str) -> ShipState | None:
        return next((s for s in self.shipping if s.repo == repo and s.app == app), None)

    def lock(self, app: str) -> LockInfo | None:
        return next((lock for lock in self.locks if lock.app == app), None)

    def finishing(self, lock: LockInfo) -> bool:
        """The lock's job is past its commit point: the app's next job waits for it (recover-jobs)."""
        return any(j.job_id == lock.info.get("job") and j.committed for j in self.jobs)

    def last_job(self, app: str) -> JobRecord | None:
        jobs = [j for j in self.jobs if j.app == app]
        return max(jobs, key=lambda j: j.job_id.rsplit("-", 1)[-1]) if jobs else None

    def preserved_for(self, version: int, app: str) -> list[PreservedDir]:
        return sorted(
            (p for p in self.preserved if p.version == version and p.app == app),
            key=lambda p: p.name.rsplit("-", 1)[-1],
        )

    def gaps_for(self, app: str) -> list[WalGap]:
        return [g for g in self.wal_gaps if g.stanza == app]

    def points_for(self, app: str) -> list[RestorePoint]:
        return [p for p in self.restore_points if p.app == app]

    def cluster(self, name: str) -> ClusterFacts | None:
        return next((c for c in self.clusters if c.name == name), None)

    @property
    def newest_pg(self) -> int | None:
        return max(self.pg_versions) if self.pg_versions else None

    @property
    def data_disk(self) -> DiskFacts | None:
        return self.disks[0] if self.disks else None


# -- parsers (pure) ------------------------------------------------------------


def split_sections(text: str) -> dict[str, list[str]]:
    """'@@name' headers -> {name: lines}; text before the first header is dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = sections.setdefault(line[2:].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def parse_lsclusters(lines: list[str]) -> list[ClusterFacts]:
    """`pg_lsclusters --no-header` text -> clusters (columns: ver name port status owner data log)."""
    clusters = []
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or not parts[0].isdigit() or not parts[2].isdigit():
            continue
        clusters.append(
            ClusterFacts(
                version=int(parts[0]),
                name=parts[1],
                port=int(parts[2]),
                status=parts[3],
                owner=parts[4],
                data_dir=parts[5],
                log_file=parts[6] if len(parts) > 6 else "",
            )
        )
    return clusters


def parse_listen(lines: list[str]) -> frozenset[int]:
    """`ss -Hltn` local addresses (127.0.0.1:5432, [::1]:5432, *:22) -> ports."""
    ports = set()
    for line in lines:
        _, _, port = line.strip().rpartition(":")
        if port.isdigit():
            ports.add(int(port))
    return frozenset(ports)


def parse_df(lines: list[str]) -> tuple[DiskFacts, ...]:
    """`df -P -B1` rows -> disks, one per distinct mount point, in order."""
    disks: list[DiskFacts] = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1].isdigit() and parts[3].isdigit():
            disk = DiskFacts(mount=parts[5], total_bytes=int(parts[1]), free_bytes=int(parts[3]))
            if all(d.mount != disk.mount for d in disks):
                disks.append(disk)
    return tuple(disks)


def _ts(value: object) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), tz=UTC)  # type: ignore[arg-type]


def parse_pgbackrest_info(text: str) -> dict[str, StanzaInfo]:
    """`pgbackrest info --output=json` -> {stanza: StanzaInfo}. Raises ValueError on non-JSON."""
    data = json.loads(text)
    stanzas = {}
    for raw in data:
        backups = tuple(
            BackupInfo(
                label=b["label"],
                type=b["type"],
                start=_ts(b["timestamp"]["start"]),  # type: ignore[arg-type]
                stop=_ts(b["timestamp"]["stop"]),  # type: ignore[arg-type]
                size=int(b.get("info", {}).get("size", 0)),
                repo_size=int(b.get("info", {}).get("repository", {}).get("size", 0)),
                wal_start=(b.get("archive") or {}).get("start"),
                wal_stop=(b.get("archive") or {}).get("stop"),
                error=bool(b.get("error", False)),
                lsn_start=(b.get("lsn") or {}).get("start"),
                lsn_stop=(b.get("lsn") or {}).get("stop"),
                annotation=tuple(sorted((b.get("annotation") or {}).items())),
            )
            for b in raw.get("backup", [])
        )
        archives = raw.get("archive") or []
        status = raw.get("status", {})
        # a repo's own error (a wrong passphrase: FormatError) is in its entry, not the stanza's
        repo_errors = [
            r["status"]["message"] for r in raw.get("repo") or [] if (r.get("status") or {}).get("code", 0) not in (0,)
        ]
        message = status.get("message", "")
        stanzas[raw["name"]] = StanzaInfo(
            name=raw["name"],
            status_code=int(status.get("code", 99)),
            status_message="; ".join(dict.fromkeys([message, *repo_errors])) if repo_errors else message,
            backups=backups,
            wal_min=min((a["min"] for a in archives if a.get("min")), default=None),
            wal_max=max((a["max"] for a in archives if a.get("max")), default=None),
            backup_running=bool(status.get("lock", {}).get("backup", {}).get("held", False)),
            pg_version=int(raw["db"][-1]["version"]) if raw.get("db") else None,
        )
    return stanzas


def backup_problem(app: str, info_json: str, where: str = "the repository") -> str | None:
    """What is wrong with `pgbackrest info --output=json` after a backup of app, or None."""
    try:
        stanza = parse_pgbackrest_info(info_json).get(app)
    except (ValueError, KeyError, TypeError):
        return "pgbackrest info did not return JSON"
    if stanza is None or not stanza.backups:
        return f"{where} shows no backup of {app}"
    if stanza.status_code != 0:
        return f"stanza {app} in {where}: {stanza.status_message}"
    return None


def parse_cluster_sql(lines: list[str]) -> dict[str, object]:
    """The CLUSTER_SQL row -> dict; {'error': text} when psql failed."""
    text = "\n".join(lines).strip()
    try:
        row = json.loads(text)
    except ValueError:
        return {"error": text or "no answer from psql"}
    return row if isinstance(row, dict) else {"error": text}


def _with_sql(cluster: ClusterFacts, row: dict[str, object]) -> ClusterFacts:
    if "error" in row:
        return replace(cluster, sql_error=str(row["error"]).splitlines()[-1] if row["error"] else "psql failed")
    archiver = ArchiverStats(
        archived_count=int(row.get("archived_count") or 0),  # type: ignore[arg-type]
        last_archived_wal=row.get("last_archived_wal"),  # type: ignore[arg-type]
        last_archived_time=_ts(row.get("last_archived_time")),
        failed_count=int(row.get("failed_count") or 0),  # type: ignore[arg-type]
        last_failed_wal=row.get("last_failed_wal"),  # type: ignore[arg-type]
        last_failed_time=_ts(row.get("last_failed_time")),
    )
    return replace(
        cluster,
        in_recovery=bool(row.get("in_recovery")),
        timeline=row.get("timeline"),  # type: ignore[arg-type]
        size_bytes=row.get("size"),  # type: ignore[arg-type]
        start_time=_ts(row.get("start_time")),
        archive_mode=row.get("archive_mode"),  # type: ignore[arg-type]
        archive_command=row.get("archive_command"),  # type: ignore[arg-type]
        data_checksums=row.get("data_checksums") == "on",
        archiver=archiver,
    )


def parse_lsn(text: str) -> int:
    """'0/3000050' -> 50331728."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def parse_history(lines: list[str]) -> tuple[tuple[int, int], ...]:
    """A timeline history file -> ((parent timeline, switch LSN), ...)."""
    entries = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and "/" in parts[1]:
            entries.append((int(parts[0]), parse_lsn(parts[1])))
    return tuple(entries)


def _records(lines: list[str]) -> list[tuple[str, dict[str, str]]]:
    """'<word> k=v k=v...' lines -> [(word, {k: v})]."""
    records = []
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        if word:
            records.append((word, parse_info(rest)))
    return records


def _preserved(lines: list[str]) -> tuple[PreservedDir, ...]:
    found = []
    for line in lines:
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            found.append(PreservedDir(parts[2], int(parts[0]), datetime.fromtimestamp(int(parts[1]), tz=UTC)))
    return tuple(found)


def _points(lines: list[str]) -> tuple[RestorePoint, ...]:
    points = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2].replace(".", "", 1).isdigit():
            points.append(RestorePoint(parts[0], parts[1], _ts(parts[2]), parts[3]))  # type: ignore[arg-type]
    return tuple(points)


def _gaps(lines: list[str]) -> tuple[WalGap, ...]:
    gaps = []
    for line in lines:
        parts = line.split()
        if len(parts) == 6 and all(len(p) == 24 for p in parts[2:4]):
            try:
                times = datetime.fromtimestamp(float(parts[4]), tz=UTC), datetime.fromtimestamp(float(parts[5]), tz=UTC)
            except ValueError:
                continue
            gaps.append(WalGap(parts[0], parts[1], parts[2], parts[3], *times))
    return tuple(gaps)


def _schedules(lines: list[str]) -> tuple[ScheduleEntry, ...]:
    entries = []
    for line in lines:
        info = parse_info(line.removeprefix("# pgmam-schedule "))
        if {"app", "type", "calendar"} <= info.keys():
            since = _epoch(info["since"]) if info.get("since", "").isdigit() else None
            entries.append(ScheduleEntry(info["app"], info["type"], info["calendar"].replace("_", " "), since))
    return tuple(entries)


def _runs(lines: list[str]) -> tuple[ScheduledRun, ...]:
    runs = []
    for line in lines:
        parts = line.split()
        if len(parts) == 6 and parts[1].isdigit() and parts[2].lstrip("-").isdigit() and parts[5].isdigit():
            runs.append(ScheduledRun(parts[0], _ts(parts[1]), int(parts[2]), parts[3], parts[4], int(parts[5])))  # type: ignore[arg-type]
    return tuple(runs)


def _offset(text: str) -> int:
    """'+0130' -> 90, '-0500' -> -300; anything else -> 0."""
    if len(text) == 5 and text[0] in "+-" and text[1:].isdigit():
        minutes = int(text[1:3]) * 60 + int(text[3:])
        return minutes if text[0] == "+" else -minutes
    return 0


def _drills(lines: list[str]) -> tuple[DrillResult, ...]:
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 7 and parts[1].isdigit():
            app, _, repo = parts[0].partition("@")
            seconds = int(parts[8]) if len(parts) > 8 and parts[8].isdigit() else None
            on = parts[9] if len(parts) > 9 else None
            found.append(
                DrillResult(
                    app, _ts(parts[1]), parts[2] == "ok", *parts[3:7], repo=repo or None, seconds=seconds, on=on
                )  # type: ignore[arg-type]
            )
    return tuple(found)


def _key_line(lines: list[str], kind: str) -> str:
    return next((line.split(" ", 1)[1].strip() for line in lines if line.startswith(kind + " ")), "")


def _epoch(text: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except ValueError:
        return None


def _shipping(lines: list[str]) -> tuple[ShipState, ...]:
    """'app REPO APP FILES BYTES OLDEST LAST_OK [ERROR_EPOCH ERROR...]' lines of the ship section."""
    found = []
    for line in lines:
        parts = line.split(" ", 7)
        if len(parts) < 7 or parts[0] != "app" or not parts[3].isdigit() or not parts[4].isdigit():
            continue
        error = parts[7].strip() if len(parts) > 7 else ""
        error_time = None
        if error:
            stamp, _, message = error.partition(" ")
            error_time, error = (_epoch(stamp), message) if _epoch(stamp) else (None, error)
        found.append(
            ShipState(
                parts[1], parts[2], int(parts[3]), int(parts[4]), _epoch(parts[5]), _epoch(parts[6]), error, error_time
            )
        )
    return tuple(found)


def parse_hosted(sections: dict[str, list[str]]) -> dict[str, HostedRepo]:
    hosted = {}
    for name, lines in sections.items():
        if not name.startswith("hosted "):
            continue
        server = name.split(" ", 1)[1]
        raw = "\n".join(lines).strip()
        gaps = _gaps(sections.get(f"hosted-gaps {server}", []))
        cipher = "".join(sections.get(f"hosted-cipher {server}", [])).strip()
        newest = {}
        for line in sections.get(f"hosted-newest {server}", []):
            parts = line.split()
            if len(parts) == 3 and (arrived := _epoch(parts[2])):
                newest[parts[0]] = (parts[1][:24], arrived)
        ports = {
            parts[0]: int(parts[1])
            for parts in (line.split() for line in sections.get(f"hosted-ports {server}", []))
            if len(parts) == 2 and parts[1].isdigit()
        }
        prefix = f"hosted-history {server} "
        history = {k[len(prefix) :]: parse_history(lines) for k, lines in sections.items() if k.startswith(prefix)}
        held = tuple(line.strip() for line in sections.get(f"hosted-stanzas {server}", []) if line.strip())
        extra = {"cipher_sha256": cipher, "newest": newest, "ports": ports, "history": history, "held": held}
        try:
            hosted[server] = HostedRepo(server, parse_pgbackrest_info(raw), gaps, **extra)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            lines = raw.splitlines()
            # pgBackRest's error line; a wrong passphrase's garbage can make the JSON itself unreadable
            error = next((line for line in lines if "ERROR" in line or "Error]" in line), lines[-1] if lines else "")
            error = error or "no output"
            hosted[server] = HostedRepo(server, {}, gaps, error=error, **extra)  # type: ignore[arg-type]
    return hosted


def _watchdog(lines: list[str]) -> WatchdogRecord | None:
    if not lines or lines[0].strip() != "configured":
        return None
    try:
        run = json.loads("\n".join(lines[1:]) or "{}")
        moment = datetime.fromisoformat(run["time"]) if run.get("time") else None
        every = int(run.get("every_seconds", 300))
        disks = {mount: found for mount, found in dict(run.get("disks", {})).items() if isinstance(found, dict)}
        return WatchdogRecord(moment, every, dict(run.get("channels", {})), run.get("error"), disks)
    except (ValueError, TypeError, AttributeError):
        return WatchdogRecord(None, 300, {}, "its record (/var/lib/pgmam/watchdog/last.json) is unreadable")


def parse_probe(text: str) -> ServerFacts:
    """The whole probe output -> ServerFacts."""
    s = split_sections(text)

    def first(name: str, default: str = "") -> str:
        lines = [line for line in s.get(name, []) if line.strip()]
        return lines[0].strip() if lines else default

    tools = {}
    for line in s.get("tools", []):
        name, _, answer = line.partition(" ")
        if name:
            tools[name] = answer.strip() == "yes"
    pgmam_confs = {line.strip() for line in s.get("pgmam-confs", []) if line.strip()}
    starts = dict(line.split(" ", 1) for line in s.get("start-conf", []) if " " in line)
    clusters = []
    for cluster in parse_lsclusters(s.get("clusters", [])):
        cluster = replace(
            cluster,
            pgmam_conf=f"{cluster.config_dir}/conf.d/pgmam.conf" in pgmam_confs,
            start=starts.get(f"{cluster.config_dir}/start.conf", "auto").strip() or "auto",
        )
        sql = s.get(f"sql {cluster.version} {cluster.name}")
        if sql is not None:
            cluster = _with_sql(cluster, parse_cluster_sql(sql))
        history = s.get(f"history {cluster.version} {cluster.name}")
        if history:
            cluster = replace(cluster, history=parse_history(history))
        clusters.append(cluster)

    stanzas: dict[str, StanzaInfo] = {}
    pgbackrest_error = None
    raw_info = "\n".join(s.get("pgbackrest", [])).strip()
    if raw_info:
        try:
            stanzas = parse_pgbackrest_info(raw_info)
        except (ValueError, KeyError, TypeError):
            pgbackrest_error = raw_info.splitlines()[-1]

    now_text = first("now", "0")
    try:
        now = datetime.fromtimestamp(float(now_text), tz=UTC)  # sub-second: "now" can be a restore target
    except ValueError:
        now = datetime.fromtimestamp(0, tz=UTC)
    return ServerFacts(
        hostname=first("host"),
        now=now,
        cpu_count=int(first("cpus", "1")) if first("cpus", "1").isdigit() else 1,
        systemd=first("systemd") == "yes",
        tools=tools,
        pg_versions=tuple(sorted(int(v) for v in (x.strip() for x in s.get("pgversions", [])) if v.isdigit())),
        listening_ports=parse_listen(s.get("listen", [])),
        disks=parse_df(s.get("disk", [])),
        global_conf=first("global-conf", "absent"),
        managed_stanzas=frozenset(line.strip() for line in s.get("stanza-confs", []) if line.strip()),
        clusters=tuple(clusters),
        stanzas=stanzas,
        pgbackrest_error=pgbackrest_error,
        locks=tuple(
            LockInfo(info.get("app", ""), alive == "yes", info) for alive, info in _records(s.get("locks", []))
        ),
        jobs=tuple(
            JobRecord(info.get("job", ""), info.get("app", ""), info.get("op", ""), result, info)
            for result, info in _records(s.get("jobs", []))
            if info.get("job")
        ),
        preserved=_preserved(s.get("preserved", [])),
        restore_points=_points(s.get("restore-points", [])),
        wal_gaps=_gaps(s.get("wal-gaps", [])),
        schedules=_schedules(s.get("schedules", [])),
        scheduled_runs=_runs(s.get("scheduled-runs", [])),
        drills=_drills(s.get("drills", [])),
        utc_offset_minutes=_offset(first("utc-offset", "+0000")),
        user_key=_key_line(s.get("ssh-keys", []), "user-key"),
        host_key=_key_line(s.get("ssh-keys", []), "host-key"),
        trusted=frozenset(line.strip() for line in s.get("ssh-keys", []) if line.startswith(("known ", "authorized "))),
        offsite_files={
            parts[1]: parts[0] for parts in (line.split() for line in s.get("offsite-files", [])) if len(parts) == 2
        },
        shipper=next((line.split()[1] for line in s.get("ship", []) if line.startswith("shipper ")), ""),
        shipping=_shipping(s.get("ship", [])),
        hosted=parse_hosted(s),
        watchdog=_watchdog(s.get("watchdog", [])),
        server_code=first("server-code", ""),
        parents={
            line.split(":", 1)[0].rsplit("/", 1)[-1].removesuffix(".conf"): line.rsplit(" ", 1)[-1]
            for line in s.get("parents", [])
            if ":# pgmam-parent " in line
        },
    )


def gather(session: HostSession, recover: str | None = None, *, install: bool = False) -> tuple[ServerFacts, str]:
    """Run the probe on one host; returns the facts and the raw text (for fixtures).

    A mutating operation passes its app as ``recover`` (``--all`` for every app): what a killed
    job of it left is finished or undone before the facts are read."""
    result = session.run(probe_command(recover, install=install))
    return parse_probe(result.stdout), result.stdout
