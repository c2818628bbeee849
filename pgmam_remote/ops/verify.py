"""verify: a restore drill. Prove a backup restores, without touching the live cluster.

The newest backup (or the one for --to) is restored into a throwaway dir beside the live data,
a temporary local-only instance (no TCP, archiving off: it never writes to the stanza) replays
it and is promoted, then it is examined: every database accepts connections, pg_amcheck checks
heap and btree indexes when it is available, and every table is counted. The result is
recorded on the server (status shows "last proven restorable") and everything is torn down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import server_code
from ..errors import Refusal
from ..facts import ClusterFacts, ServerFacts
from ..job import LONG_STEP_DEADLINE_S, JobSpec
from ..plan import Plan, Step
from ..remote import Command
from . import restore
from .restore import Paths

RESULTS_DIR = "/var/lib/pgmam/verify"


@dataclass(frozen=True)
class VerifyPlan:
    spec: JobSpec
    backup: str

    @property
    def plan(self) -> Plan:
        return self.spec.plan


def plan_verify(host: str, facts: ServerFacts, app: str, to: datetime | None, who: str) -> VerifyPlan:
    """Pure: checks, then the drill's steps. The live cluster is never stopped or written to."""
    cluster = restore.managed_cluster(host, facts, app)
    restore.check_no_conflict(host, facts, app)
    stanza = facts.stanzas.get(app)
    if stanza is None or not stanza.backups:
        raise Refusal(f"{host}: {app} has no backup to verify", hint=f"inv backup --host {host} --app {app}")
    if to is not None:
        if to > facts.now:
            raise Refusal(f"{host}: target {to.isoformat()} is in the future", hint="pick a time in the past")
        backup = restore.choose_backup(host, cluster, stanza.backups, to, facts.gaps_for(app))
        text = to.astimezone(facts.now.tzinfo).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        target_args = ["--type=time", f"--target={text}", f"--target-timeline={cluster.timeline or 1}"]
        target = to.isoformat()
    else:
        usable = restore.usable_backups(cluster, stanza.backups) if cluster.timeline else list(stanza.backups)
        if not usable:
            raise Refusal(f"{host}: {app} has no backup on its current timeline", hint="take a backup first")
        backup = usable[-1]
        target_args = ["--type=immediate"]
        target = "latest"
    restore.check_space(host, facts, cluster, backup)
    stamp = restore.stamp(facts.now)
    port = restore.free_port(facts, 30000 + cluster.port % 10000)
    steps = drill_steps(cluster, backup.label, stamp, port, target_args, target)
    return VerifyPlan(drill_spec(host, app, steps, target, backup.label, stamp, who), backup.label)


def drill_steps(
    cluster: ClusterFacts, backup: str, stamp: str, port: int | str, target_args: list[str], target: str
) -> list[Step]:
    """The drill itself: restore, start, prove, examine, tear down. Shared by `inv verify` and the
    scheduled drill, whose backup, stamp and port are placeholders the server fills in at run time."""
    app, v = cluster.name, cluster.version
    paths = Paths(app, cluster.data_dir, stamp)
    conf = f"{cluster.config_dir}/postgresql.conf"
    return [
        Step(
            f"restore backup {backup} into {paths.drill}",
            server_code.step("restore-staging", app, paths.drill, backup, paths.run, port, conf, *target_args),
            long=True,
            undo=server_code.step("discard-drill", app, backup, target, paths.drill),
            undo_if_failed=True,
        ),
        Step(
            f"start a throwaway local-only instance on it (port {port}, no TCP, archiving off)",
            server_code.step("start-staging", v, paths.drill, paths.run, port, LONG_STEP_DEADLINE_S),
            long=True,
            undo=server_code.step("stop-instance", v, paths.drill, "immediate"),
        ),
        Step(
            "replay and prove it (stopped at the target, out of recovery)",
            server_code.step("prove-recovery", paths.run, port, f"{paths.run}/staging.log", 0, paths.drill),
            long=True,
        ),
        Step(
            "examine it: every database connects, pg_amcheck (heap + btree), row counts per table",
            server_code.step("drill", paths.run, port, v, app, backup, target),
            long=True,
        ),
        Step("stop the throwaway instance", server_code.step("stop-instance", v, paths.drill, "fast")),
        Step(f"remove {paths.drill}", Command.of("rm", "-rf", "--", paths.drill)),
    ]


def drill_spec(
    host: str, app: str, steps: list[Step], target: str, backup: str, stamp: str, who: str, mode: str = "drill"
) -> JobSpec:
    plan = Plan(host=host, title=f"verify {app} ({target}, backup {backup})", steps=tuple(steps), as_job=True)
    return JobSpec(
        op="verify",
        app=app,
        job_id=f"verify-{app}-{stamp}",
        holder=who,
        info={"target": target, "mode": mode},
        plan=plan,
    )


# -- the scheduled drill: rendered once by `inv schedule --verify`, filled in by the server ----------

# Placeholders in a scheduled job's script, replaced by the server's scheduled runner when it fires.
STAMP_SLOT, BACKUP_SLOT, PORT_SLOT = "@PGMAM_STAMP@", "@PGMAM_BACKUP@", "@PGMAM_PORT@"


def scheduled_drill_spec(host: str, cluster: ClusterFacts) -> JobSpec:
    """Pure: the scheduled drill of the newest backup, with placeholders for run-time facts.

    The scheduled runner does the preflight that `plan_verify` does here (a backup exists, free
    space for a restored copy, a free port) before it starts the job."""
    steps = drill_steps(cluster, BACKUP_SLOT, STAMP_SLOT, PORT_SLOT, ["--type=immediate"], "latest")
    return drill_spec(host, cluster.name, steps, "latest", BACKUP_SLOT, STAMP_SLOT, "schedule", mode="scheduled")
