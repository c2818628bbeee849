"""metrics: a server's health in the Prometheus text format, for node_exporter's textfile collector.

The watchdog writes them after each run (watchdog.py); each figure comes from the same
:class:`health.HostStatus` that `inv status --json` prints, so the two always agree. Every
metric is documented in docs/monitoring.md (a unit test checks that each one is there). Pure,
and standard library only: the watchdog imports it on servers.
"""

from __future__ import annotations

from datetime import datetime

from . import health
from .facts import ServerFacts

# name -> (type, help); the order of the file
METRICS: dict[str, tuple[str, str]] = {
    "pgmam_watchdog_last_run_timestamp_seconds": ("gauge", "When the watchdog last ran."),
    "pgmam_watchdog_interval_seconds": ("gauge", "How often the watchdog runs."),
    "pgmam_server_healthy": ("gauge", "1 when the server itself needs no attention (disk, pgBackRest)."),
    "pgmam_disk_free_bytes": ("gauge", "Free bytes on the filesystem of the data and the repository."),
    "pgmam_disk_size_bytes": ("gauge", "Size of that filesystem."),
    "pgmam_app_healthy": ("gauge", "1 when the app needs no attention (inv status shows it green)."),
    "pgmam_app_problems": ("gauge", "How many problems inv status shows for the app."),
    "pgmam_cluster_up": ("gauge", "1 when the app's cluster is online."),
    "pgmam_last_backup_timestamp_seconds": ("gauge", "End of the newest good backup, per type and repo."),
    "pgmam_archive_lag_seconds": ("gauge", "Seconds since the app last archived a WAL segment."),
    "pgmam_archive_failed_total": ("counter", "Failed WAL archive attempts since the statistics reset."),
    "pgmam_archive_failing": ("gauge", "1 when the last archive attempt failed."),
    "pgmam_recovery_window_start_timestamp_seconds": ("gauge", "The earliest time the app can be restored to."),
    "pgmam_recovery_window_end_timestamp_seconds": ("gauge", "The latest time the app can be restored to."),
    "pgmam_offsite_waiting_bytes": ("gauge", "WAL archived here and not yet shipped to the repo."),
    "pgmam_offsite_lag_seconds": ("gauge", "Age of the oldest WAL still waiting for the repo."),
    "pgmam_drill_timestamp_seconds": ("gauge", "When the last restore drill ran."),
    "pgmam_drill_success": ("gauge", "1 when the last restore drill passed."),
    "pgmam_drill_duration_seconds": (
        "gauge",
        "Seconds the last drill's restore and checks took (a measured restore time).",
    ),
    "pgmam_copies_bytes": ("gauge", "Bytes held by pgmam's copies of the app's data, per kind."),
}


def _epoch(iso: object) -> float | None:
    return datetime.fromisoformat(str(iso)).timestamp() if iso else None


def _labels(labels: dict[str, str]) -> str:
    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escaped(v)}"' for k, v in labels.items()) + "}" if labels else ""


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.3f}"


def render(status: health.HostStatus, facts: ServerFacts, run_time: str, every_seconds: int) -> str:
    """Pure: the textfile's content."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in METRICS}

    def add(name: str, value: float | None, **labels: str) -> None:
        if value is not None:
            samples[name].append((labels, float(value)))

    add("pgmam_watchdog_last_run_timestamp_seconds", _epoch(run_time))
    add("pgmam_watchdog_interval_seconds", every_seconds)
    add("pgmam_server_healthy", 0 if status.problems else 1)
    for disk in facts.disks:
        add("pgmam_disk_free_bytes", disk.free_bytes, mount=disk.mount)
        add("pgmam_disk_size_bytes", disk.total_bytes, mount=disk.mount)
    for cluster in status.clusters:
        if not cluster.managed:
            continue
        app = cluster.app
        add("pgmam_app_healthy", 1 if cluster.healthy else 0, app=app)
        add("pgmam_app_problems", len(cluster.problems), app=app)
        add("pgmam_cluster_up", 1 if cluster.status.startswith("online") else 0, app=app)
        stanza = facts.stanzas.get(app)
        newest: dict[str, float] = {}
        for backup in stanza.backups if stanza else ():
            if not backup.error:
                newest[backup.type] = max(newest.get(backup.type, 0.0), backup.stop.timestamp())
        for kind, stop in sorted(newest.items()):
            add("pgmam_last_backup_timestamp_seconds", stop, app=app, type=kind, repo="local")
        archiving = cluster.archiving
        if archiving is not None:
            add("pgmam_archive_lag_seconds", archiving.last_archived_age_seconds, app=app)
            add("pgmam_archive_failed_total", archiving.failed_count, app=app)
            add("pgmam_archive_failing", 0 if archiving.ok else 1, app=app)
        _window(add, cluster.recovery_window, app, "local")
        _drill(add, cluster.last_proven_restorable, app, "local")
        for entry in cluster.offsite:
            repo = str(entry["repo"])
            waiting = entry.get("waiting") or {}
            add("pgmam_offsite_waiting_bytes", waiting.get("bytes"), app=app, repo=repo)  # type: ignore[union-attr]
            add("pgmam_offsite_lag_seconds", waiting.get("lag_seconds"), app=app, repo=repo)  # type: ignore[union-attr]
            last = entry.get("last_backup")
            if last:
                add("pgmam_last_backup_timestamp_seconds", _epoch(last["stop"]), app=app, type=last["type"], repo=repo)  # type: ignore[index]
            _window(add, entry.get("recovery_window"), app, repo)  # type: ignore[arg-type]
            _drill(add, entry.get("last_proven_restorable"), app, repo)  # type: ignore[arg-type]
        kinds: dict[str, int] = {}
        for copy in cluster.preserved:
            kinds[str(copy["kind"])] = kinds.get(str(copy["kind"]), 0) + int(copy["size_bytes"] or 0)  # type: ignore[call-overload]
        for kind, size in sorted(kinds.items()):
            add("pgmam_copies_bytes", size, app=app, kind=kind)
    lines = []
    for name, (kind, text) in METRICS.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples[name]]
    return "\n".join(lines) + "\n"


def _window(add, window: dict[str, object] | None, app: str, repo: str) -> None:  # type: ignore[no-untyped-def]
    if window:
        add("pgmam_recovery_window_start_timestamp_seconds", _epoch(window.get("start")), app=app, repo=repo)
        add("pgmam_recovery_window_end_timestamp_seconds", _epoch(window.get("end")), app=app, repo=repo)


def _drill(add, drill: dict[str, object] | None, app: str, repo: str) -> None:  # type: ignore[no-untyped-def]
    if drill:
        add("pgmam_drill_timestamp_seconds", _epoch(drill["time"]), app=app, repo=repo)
        add("pgmam_drill_success", 1 if drill["ok"] else 0, app=app, repo=repo)
        add("pgmam_drill_duration_seconds", drill.get("seconds"), app=app, repo=repo)
