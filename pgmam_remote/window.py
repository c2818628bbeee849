"""What an app can be restored to: the recovery window of a repo's backups and WAL, and its holes.

Pure, and standard library only: the watchdog imports it on servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .facts import BackupInfo, ClusterFacts, ServerFacts, WalGap, parse_lsn


def backup_on_lineage(backup: BackupInfo, cluster: ClusterFacts, timeline: int) -> bool:
    """Can WAL replay get from this backup onto ``timeline``? (abandoned timelines cannot)"""
    if backup.error or backup.timeline is None:
        return False
    if backup.timeline == timeline:
        return True
    for parent, switch_lsn in cluster.history:
        if parent == backup.timeline:
            return backup.lsn_stop is not None and parse_lsn(backup.lsn_stop) <= switch_lsn
    return False


def usable_backups(cluster: ClusterFacts, backups: tuple[BackupInfo, ...]) -> list[BackupInfo]:
    timeline = cluster.timeline or 1
    return [b for b in backups if backup_on_lineage(b, cluster, timeline)]


@dataclass(frozen=True)
class WindowBreak:
    """A hole in the recovery window: WAL missing from the repository (see facts.WalGap).

    No restore reaches a time after ``start`` from a backup taken before the hole; restores from
    ``end`` on (the end of the first backup taken after it) work again. ``end`` is None while no
    backup has been taken since: the window ends at ``start``."""

    start: datetime
    end: datetime | None
    gap: WalGap

    def describe(self) -> str:
        until = self.end.isoformat(timespec="seconds") if self.end else "now"
        return (
            f"{self.gap.missing} WAL segments missing from the repository after {self.gap.before} "
            f"(archived {self.start.isoformat(timespec='seconds')}): no restore to a time between then and {until}"
        )


def window_breaks(usable: list[BackupInfo], gaps: list[WalGap]) -> list[WindowBreak]:
    """Pure: the holes that lie inside the recovery window of these usable backups (a hole before
    every one of them is not in it)."""
    breaks = []
    for gap in gaps:
        if not any(b.wal_start and b.wal_start <= gap.before for b in usable):
            continue
        resume = next((b for b in usable if b.wal_start and b.wal_start >= gap.after), None)
        breaks.append(WindowBreak(gap.before_time, resume.stop if resume else None, gap))
    return sorted(breaks, key=lambda b: b.start)


@dataclass(frozen=True)
class RecoveryWindow:
    """From the end of the oldest usable backup to the newest archived WAL, with its holes."""

    start: datetime | None
    end: datetime | None
    breaks: tuple[WindowBreak, ...] = ()

    def json(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "breaks": [
                {
                    "from": b.start.isoformat(),
                    "to": b.end.isoformat() if b.end else None,
                    "missing_segments": b.gap.missing,
                    "last_before": b.gap.before,
                    "first_after": b.gap.after,
                }
                for b in self.breaks
            ],
        }


def recovery_window(
    cluster: ClusterFacts, backups: tuple[BackupInfo, ...], gaps: list[WalGap], wal_until: datetime | None = None
) -> RecoveryWindow:
    """Pure: what an app can be restored to. A hole no backup has been taken after ends it early.
    ``wal_until``: where the repo's WAL ends, when not at the app's last archived segment (an
    off-host repo that WAL is still on its way to)."""
    usable = usable_backups(cluster, backups) if cluster.timeline else list(backups)
    first = usable[0] if usable else (backups[0] if backups else None)
    if first is None:
        return RecoveryWindow(None, None)
    archived = wal_until or (cluster.archiver.last_archived_time if cluster.archiver else None)
    end = max(archived, first.stop) if archived else first.stop
    breaks = tuple(window_breaks(usable, gaps))
    unresolved = [b.start for b in breaks if b.end is None]
    if unresolved:
        end = max(min(end, *unresolved), first.stop)
    return RecoveryWindow(first.stop, end, breaks)


def in_repo(
    cluster: ClusterFacts, facts: ServerFacts, vault: ServerFacts, server: str, repo: str
) -> tuple[tuple[BackupInfo, ...], RecoveryWindow]:
    """Pure: an app's backups in an off-host repo, as its repository host reports them, and the
    recovery window there. It ends where the WAL still waiting to be shipped begins, and breaks at
    every hole in the repo's copy of the WAL."""
    hosted = vault.hosted.get(server)
    stanza = hosted.stanzas.get(cluster.name) if hosted else None
    backups = stanza.backups if stanza else ()
    gaps = [g for g in hosted.gaps if g.stanza == cluster.name] if hosted else []
    shipping = facts.shipping_of(repo, cluster.name)
    waiting_since = shipping.oldest if shipping is not None and shipping.files else None
    return backups, recovery_window(cluster, backups, gaps, waiting_since)
