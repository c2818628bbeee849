"""rollback: swap an app back to a preserved data dir (the newest old-APP-*, or --to DIR).

The current data is preserved the same way pitr preserves it, with the same
lock, journal, verification and automatic undo. The timeline the app leaves
stays harmless: pitr always follows the live cluster's own timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Refusal
from ..facts import PreservedDir, ServerFacts
from ..inventory import Host
from ..job import JobSpec, JobState
from ..plan import Plan
from ..runner import Confirmation, HostJob, Prepared, Report
from . import restore
from .restore import Paths


@dataclass(frozen=True)
class RollbackPlan:
    plan: Plan
    spec: JobSpec
    source: PreservedDir
    words: list[str] = field(default_factory=list)


def plan_rollback(host: str, facts: ServerFacts, app: str, to: str | None, who: str) -> RollbackPlan:
    """Pure: checks, then the swap steps."""
    cluster = restore.managed_cluster(host, facts, app)
    restore.check_no_conflict(host, facts, app)
    # kept dirs only: a staging-/verify- dir is a job's working copy, never something to go back to
    preserved = [p for p in facts.preserved_for(cluster.version, app) if p.kind in ("old", "failed")]
    if to:
        matches = [p for p in preserved if to in (p.path, p.name)]
        if not matches:
            names = ", ".join(p.name for p in preserved) or "none"
            raise Refusal(f"{host}: {to} is not a preserved dir of {app} (preserved: {names})", hint="see `inv status`")
        source = matches[0]
    else:
        olds = [p for p in preserved if p.kind == "old"]
        if not olds:
            raise Refusal(
                f"{host}: {app} has no preserved data dir to roll back to", hint="pitr preserves one each time"
            )
        source = olds[-1]
    stamp = restore.job_stamp(facts)
    paths = Paths(app, cluster.data_dir, stamp)
    steps = restore.swap_steps(
        cluster, source.path, paths, already_stopped=not cluster.running, rollback_to=source.path
    )
    plan = Plan(host=host, title=f"rollback {app} to {source.name}", steps=tuple(steps), as_job=True)
    words = [
        f"Swap {app} on {host} back to {source.path} (preserved {source.mtime.isoformat()}).",
        f"{app} stops for a short swap; its current data is preserved as {paths.preserved}.",
        "The preserved data starts on a new timeline, so later restores and backups stay consistent.",
        restore.swap_promise(app),
    ]
    spec = JobSpec(
        op="rollback",
        app=app,
        job_id=f"rollback-{app}-{stamp}",
        holder=who,
        info={"target": source.name, "mode": "swap"},
        plan=plan,
    )
    return RollbackPlan(plan, spec, source, words)


class Rollback(HostJob):
    def __init__(self, host: Host, app: str, to: str | None) -> None:
        super().__init__(host)
        self.app, self.to = app, to

    def plan(self, facts: ServerFacts) -> Prepared:
        self.rollback = plan_rollback(self.host.name, facts, self.app, self.to, restore.holder())
        return Prepared(self.rollback.spec, (Confirmation(tuple(self.rollback.words), self.app),))

    def report(self, state: JobState) -> Report:
        report = Report([f"{self.app} on {self.host.name} rolled back to {self.rollback.source.name}"])
        if state.downtime is not None:
            report.notes.append(f"downtime {state.downtime:.2f} s")
        return report
