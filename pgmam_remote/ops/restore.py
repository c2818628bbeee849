"""The restore machinery shared by pitr, rollback, verify, branch and recover.

Pure step builders (each step knows its undo), backup selection along the
live cluster's timeline history, and the preflight checks every restore shares.
Running the plan as a server job is runner.py's.
"""

from __future__ import annotations

import getpass
import posixpath
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import server_code
from ..command import Command
from ..errors import Refusal
from ..facts import BackupInfo, ClusterFacts, LockInfo, ServerFacts, WalGap
from ..job import LONG_STEP_DEADLINE_S, RUN_DIR
from ..plan import Step
from ..window import usable_backups, window_breaks

SPACE_MARGIN = 1.2
SPACE_SLACK_BYTES = 256 * 1024 * 1024

# -- pure helpers ---------------------------------------------------------------------


def stamp(moment: datetime) -> str:
    """UTC time of the operation, as it appears in job ids and preserved dir names."""
    return moment.strftime("%Y%m%dT%H%M%SZ")


def job_stamp(facts: ServerFacts) -> str:
    """The stamp of a job about to start (its id, the dirs it names): the second of the facts,
    or the next one no job has, when a command ran on this server within the same second."""
    taken = {job.job_id.rsplit("-", 1)[-1] for job in facts.jobs}
    moment = facts.now
    while stamp(moment) in taken:
        moment += timedelta(seconds=1)
    return stamp(moment)


def holder() -> str:
    """Who runs this, as recorded in the lock and the audit line (no spaces)."""
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    return re.sub(r"[^A-Za-z0-9@._-]", "_", who)


def choose_backup(
    host: str, cluster: ClusterFacts, backups: tuple[BackupInfo, ...], target: datetime, gaps: list[WalGap]
) -> BackupInfo:
    """The newest backup on the live timeline's lineage that ended before the target, refusing a
    target that missing WAL (``gaps``, from facts.gaps_for) puts out of its reach."""
    usable = usable_backups(cluster, backups)
    if not usable:
        raise Refusal(
            f"{host}: {cluster.name} has no backup on its current timeline's history", hint="run a backup first"
        )
    before = [b for b in usable if b.stop <= target]
    if not before:
        raise Refusal(
            f"{host}: target {target.isoformat()} is before the earliest restorable point "
            f"{usable[0].stop.isoformat()} of {cluster.name}",
            hint="pick a later target; `inv status --json` shows the recovery window",
        )
    _check_wal_reaches(host, cluster.name, usable, before[-1], target, gaps)
    return before[-1]


def _check_wal_reaches(
    host: str, app: str, usable: list[BackupInfo], backup: BackupInfo, target: datetime, gaps: list[WalGap]
) -> None:
    """Refuse a target that the chosen backup cannot reach because WAL is missing on the way."""
    blocking = [b for b in window_breaks([backup], gaps) if target > b.start]
    if not blocking:
        return
    first = blocking[0]
    later = [b.end for b in window_breaks(usable, gaps) if b.end]
    hint = f"pick a target before {first.start.isoformat(timespec='seconds')}"
    if later:
        hint += f" or after {max(later).isoformat(timespec='seconds')} (a backup taken after the hole)"
    raise Refusal(
        f"{host}: target {target.isoformat()} is past a hole in {app}'s archived WAL: "
        f"{first.gap.missing} segments after {first.gap.before} (archived {first.start.isoformat(timespec='seconds')}) "
        f"are missing from the repository, so backup {backup.label} cannot replay to it",
        hint=hint,
    )


def free_port(facts: ServerFacts, base: int) -> int:
    """A port no cluster and no listening socket uses (for local-only temporary instances)."""
    taken = set(facts.listening_ports) | {c.port for c in facts.clusters}
    for port in [*range(base, 65536), *range(20000, base)]:
        if port not in taken:
            return port
    raise Refusal("no free port for the temporary instance")


def check_space(host: str, facts: ServerFacts, cluster: ClusterFacts, backup: BackupInfo) -> int:
    """Refuse unless the data filesystem holds a restored copy plus a margin; returns bytes needed."""
    need = int(max(backup.size, cluster.size_bytes or 0) * SPACE_MARGIN) + SPACE_SLACK_BYTES
    disk = facts.data_disk
    if disk is not None and disk.free_bytes < need:
        raise Refusal(
            f"{host}: not enough free space on {disk.mount} for a restored copy of {cluster.name}: "
            f"need {need // 2**20} MiB, have {disk.free_bytes // 2**20} MiB",
            hint="free some space (old-* preserved dirs can go once you no longer need them)",
        )
    return need


def _holder(lock: LockInfo) -> str:
    info = lock.info
    return f"{info.get('op', '?')} of {lock.app} by {info.get('who', '?')} (job {info.get('job', '?')})"


def check_app_free(host: str, facts: ServerFacts, app: str) -> None:
    """No live job holds the app's lock."""
    lock = facts.lock(app)
    if lock is not None and lock.alive:
        raise Refusal(f"{host}: {app} is busy: {_holder(lock)}", hint="wait for it (inv status shows it), then re-run")


def check_no_conflict(host: str, facts: ServerFacts, app: str) -> None:
    """The per-app lock is free and no other restore or drill runs on this host (one at a time)."""
    check_app_free(host, facts, app)
    for lock in facts.locks:
        # another app's backup is no reason to wait, nor a restore that only finishes with its backup;
        # a restore or drill is (disk space, I/O)
        if lock.alive and lock.info.get("op") != "backup" and not facts.finishing(lock):
            what = _holder(lock)
            raise Refusal(f"{host}: another restore is running on this server: {what}", hint="wait for it, then re-run")
    recovering = [c for c in facts.clusters if c.recovering]
    if recovering:
        names = ", ".join(f"{c.version}/{c.name}" for c in recovering)
        raise Refusal(f"{host}: cluster(s) in recovery: {names}", hint="wait until recovery finishes, then re-run")


def managed_cluster(host: str, facts: ServerFacts, app: str) -> ClusterFacts:
    cluster = facts.cluster(app)
    if cluster is None:
        known = ", ".join(c.name for c in facts.clusters) or "none"
        raise Refusal(
            f"{host}: no cluster named {app} (clusters: {known})", hint="check --app; `inv status` lists them"
        )
    if app not in facts.managed_stanzas:
        raise Refusal(f"{host}: {app} was not made by pgmam", hint="pgmam restores only the apps it created")
    return cluster


def require_running(host: str, cluster: ClusterFacts) -> None:
    if not cluster.running:
        raise Refusal(
            f"{host}: {cluster.name} is {cluster.status}",
            hint=f"start it first (pg_ctlcluster {cluster.version} {cluster.name} start), or use `inv rollback`",
        )
    if cluster.recovering:
        raise Refusal(f"{host}: {cluster.name} is in recovery", hint="wait until recovery finishes")
    if cluster.archiver is not None and cluster.archiver.failing:
        raise Refusal(
            f"{host}: WAL archiving of {cluster.name} is failing",
            hint=f"fix archiving first: see /var/log/pgbackrest/{cluster.name}-archive-push-async.log",
        )


# -- step builders (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """Where a restore puts things, all beside the live data dir (same filesystem: moves are renames)."""

    app: str
    data: str
    stamp: str

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.data.rstrip("/"))

    @property
    def staging(self) -> str:
        return f"{self.parent}/staging-{self.app}-{self.stamp}"

    @property
    def preserved(self) -> str:
        return f"{self.parent}/old-{self.app}-{self.stamp}"

    @property
    def failed(self) -> str:
        return f"{self.parent}/failed-{self.app}-{self.stamp}"

    @property
    def drill(self) -> str:
        return f"{self.parent}/verify-{self.app}-{self.stamp}"

    @property
    def run(self) -> str:
        return f"{RUN_DIR}/{self.app}"


def archive_now_step(cluster: ClusterFacts) -> Step:
    return Step(
        "archive everything up to now (commit, WAL switch, pgbackrest check)",
        server_code.step("archive-now", cluster.port, cluster.name),
    )


def stop_live_step(cluster: ClusterFacts) -> Step:
    v, app = cluster.version, cluster.name
    return Step(
        f"stop {app} (downtime starts)",
        server_code.step("stop-live", v, app, cluster.port),
        undo=server_code.step("start-unless-booting", v, app),
    )


def staging_steps(
    cluster: ClusterFacts,
    paths: Paths,
    backup: BackupInfo,
    target_args: list[str],
    port: int,
    *,
    keep_failed: bool,
    push_history: bool = True,
) -> list[Step]:
    """Restore beside the live cluster, replay in a temporary local-only instance, prove it, clean it.

    ``push_history`` off when the copy will not live on in ``cluster``'s stanza (a branch sync).
    """
    v = cluster.version
    conf = f"{cluster.config_dir}/postgresql.conf"
    return [
        Step(
            f"restore backup {backup.label} into {paths.staging}",
            server_code.step(
                "restore-staging", cluster.name, paths.staging, backup.label, paths.run, port, conf, *target_args
            ),
            long=True,
            undo=None if keep_failed else Command.of("rm", "-rf", "--", paths.staging),
            undo_if_failed=True,
        ),
        Step(
            f"start a temporary local-only instance on the restored copy (port {port}, no TCP)",
            server_code.step("start-staging", v, paths.staging, paths.run, port, LONG_STEP_DEADLINE_S),
            long=True,
            undo=server_code.step("stop-instance", v, paths.staging, "immediate"),
        ),
        Step(
            "replay WAL to the target and prove it (stopped at the target, out of recovery, new timeline)",
            server_code.step(
                "prove-recovery", paths.run, port, f"{paths.run}/staging.log", cluster.timeline or 1, paths.staging
            ),
            long=True,
        ),
        *(
            [
                Step(
                    "archive the new timeline's history file",
                    server_code.step("push-history", cluster.name, paths.staging),
                )
            ]
            if push_history
            else []
        ),
        Step("stop the temporary instance", server_code.step("stop-instance", v, paths.staging, "fast")),
        Step(
            "remove staging-only and recovery settings from the restored copy",
            server_code.step("clean-restored", paths.staging),
        ),
    ]


def swap_promise(app: str) -> str:
    """What a swap promises, in the confirmation's words."""
    return (
        f"Other apps on this server are not touched. Any failure before {app} is back rolls back "
        f"automatically; once {app} accepts writes the command returns, and its backup on the new "
        "timeline finishes on the server (`inv status` shows it)."
    )


def swap_steps(
    cluster: ClusterFacts,
    incoming: str,
    paths: Paths,
    *,
    already_stopped: bool,
    rollback_to: str | None = None,
    before_start: tuple[Step, ...] = (),
) -> list[Step]:
    """Stop (unless already stopped), preserve the live dir, move ``incoming`` in, start, verify, back up.

    For a pitr the incoming dir is the proven restored copy, already on its new
    timeline. For a rollback (``rollback_to`` = where the preserved dir goes
    back if this fails) it is a preserved dir, which is promoted to a new
    timeline as it starts. ``before_start``: steps that run once the new data is in place, before
    the app starts on it.
    """
    v, app = cluster.version, cluster.name
    steps = [] if already_stopped else [stop_live_step(cluster)]
    steps += [
        Step(
            f"preserve the current data as {paths.preserved}",
            server_code.step("move", paths.data, paths.preserved),
            undo=server_code.step("move-back", paths.preserved, paths.data),
            undo_if_failed=True,
        ),
        Step(
            f"move {incoming} into place",
            server_code.step("move", incoming, paths.data),
            undo=server_code.step(
                "move-back", paths.data, rollback_to or paths.failed, "keep" if rollback_to else "discard"
            ),
            undo_if_failed=True,
        ),
    ]
    if rollback_to:
        steps.append(
            Step(
                "set it to promote to a new timeline when it starts",
                server_code.step("prepare-promote", v, paths.data, app),
                undo=server_code.step("clean-restored", paths.data),
            )
        )
    steps += [
        *before_start,
        Step(
            f"start {app}",
            server_code.step("start-live", v, app, cluster.port),
            undo=server_code.step("stop-if-running", v, app),
        ),
        Step(
            f"verify {app} accepts writes on its new timeline",
            server_code.step("verify-live", cluster.port, "new" if rollback_to else "noted"),
            commit=True,
        ),
    ]
    if rollback_to:
        steps.append(Step("remove the recovery settings", server_code.step("strip-recovery-settings", paths.data)))
    steps.append(
        Step(
            "prove archiving and take a backup on the new timeline",
            server_code.step("backup", app, v, "incr", "check"),
            long=True,
        )
    )
    return steps
