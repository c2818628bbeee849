"""dropcluster: remove an app's cluster, keeping its backups unless told otherwise.

A running app gets a final backup first (which also proves archiving still works). The
stanza, its backups, config snapshots and the stanza config stay, so `inv pitr --into` can
bring the app back later; `--purge-backups` deletes them too, in the local repo and in every
off-host repo that keeps the app. An app with branches
(clusters made from it by `inv branch`) is refused unless the branches are named as well.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from .. import server_code
from ..command import Command
from ..console import Console
from ..errors import Refusal
from ..facts import ServerFacts
from ..inventory import Host, Inventory, Repo
from ..job import LONG_STEP_DEADLINE_S, JobSpec
from ..plan import Plan, Step, execute
from ..remote import HostSession
from ..runner import Confirmation, HostJob, Prepared, Report, run_job
from . import restore, s3, schedule


def branches_of(facts: ServerFacts, app: str) -> list[str]:
    """Clusters made by `inv branch` from this app (recorded in their stanza config)."""
    return [c.name for c in facts.clusters if facts.parents.get(c.name) == app]


def plan_drop(host: str, facts: ServerFacts, apps: list[str], purge: bool, repos: tuple[Repo, ...] = ()) -> Plan:
    """Pure: refusals, then per app (branches first): final backup, schedule off, drop, maybe purge
    (locally, and in each of ``repos``, the host's off-host repos, that keeps the app)."""
    clusters = [restore.managed_cluster(host, facts, app) for app in apps]
    for app in apps:
        restore.check_no_conflict(host, facts, app)
        missing = [b for b in branches_of(facts, app) if b not in apps]
        if missing:
            raise Refusal(
                f"{host}: {app} has branches: {', '.join(missing)}",
                hint="name them too (--app " + " --app ".join([app, *missing]) + "), or drop them first",
            )
    steps: list[Step] = []
    for cluster in sorted(clusters, key=lambda c: -len(c.name)):  # branches (longer names) first
        app, v = cluster.name, cluster.version
        if cluster.running:
            steps.append(
                Step(
                    f"final backup of {app} (proves archiving still works)",
                    server_code.step("backup", app, v, "incr", "check", timeout=LONG_STEP_DEADLINE_S),
                    long=True,
                    hint="fix the backup first (inv status), or stop the app to drop it without a final backup",
                )
            )
        steps.append(Step(f"remove {app}'s backup schedule", schedule.remove_command(app)))
        steps.append(Step(f"drop cluster {v}/{app}", Command.of("pg_dropcluster", "--stop", v, app)))
        if purge:
            for repo in (r for r in repos if facts.shipping_of(r.name, app) is not None):
                steps += _purge_offsite(host, app, repo)
            steps.append(
                Step(f"delete stanza {app}, its backups and config snapshots", server_code.step("purge-stanza", app))
            )
    title = ("drop and purge " if purge else "drop ") + ", ".join(apps)
    return Plan(host=host, title=title, steps=tuple(steps))


def _purge_offsite(host: str, app: str, repo: Repo) -> list[Step]:
    purge = f"delete {app}'s backups and WAL in repo {repo.name}"
    if repo.s3:  # the server itself reaches the bucket
        return [Step(purge, server_code.step("purge-s3", repo.name, app))]
    return [
        Step(f"stop shipping {app}'s WAL to repo {repo.name}", server_code.step("unship-app", repo.name, app)),
        Step(purge, server_code.step("purge-hosted", host, app), on=repo.host),
    ]


def check_buckets(session: HostSession, facts: ServerFacts, apps: list[str], repos: tuple[Repo, ...]) -> None:
    """Before a purge changes anything: refuse when an S3 repo that keeps one of the apps cannot be
    read from the server. The purge there runs after the drop, and could not be finished later."""
    for repo in repos:
        if repo.s3 is not None and any(facts.shipping_of(repo.name, app) is not None for app in apps):
            s3.read_state(session, repo, session.host.name)


def keeps(apps: list[str], purge: bool, repos: tuple[Repo, ...] = ()) -> list[str]:
    """The plain words of the confirmation."""
    words = [f"Drop {', '.join(apps)}: stop the cluster(s) and delete their data directories."]
    where = (" (here and in " + ", ".join(f"repo {r.name} on {r.where}" for r in repos) + ")") if repos else ""
    if purge:
        words.append(
            f"ALSO delete their pgBackRest stanzas, every backup and archived WAL{where}: nothing can bring them back."
        )
    else:
        words.append(
            f"Backups, archived WAL, config snapshots and the stanza config are kept{where}: "
            "`inv pitr --app APP --to TIME --into NEW --port P` can bring an app back."
        )
    return words


class Drop(HostJob):
    """The drop runs on the server as one job (the app's lock, a journal, an audit line); what a
    purge deletes on repository hosts runs from here once it is done. Those hosts are reached
    before anything changes."""

    def __init__(self, inventory: Inventory, host: Host, apps: list[str], purge: bool) -> None:
        super().__init__(host)
        self.inventory, self.apps, self.purge = inventory, apps, purge
        self.repos = tuple(inventory.repos_of(host))
        self.app = apps[0] if len(apps) == 1 else "--all"

    def plan(self, facts: ServerFacts) -> Prepared:
        whole = plan_drop(self.host.name, facts, self.apps, self.purge, self.repos)
        if self.purge:
            check_buckets(self.session, facts, self.apps, self.repos)
        here = replace(whole, steps=tuple(s for s in whole.steps if not s.on), as_job=True)
        self.after = Plan(self.host.name, "then from here", tuple(s for s in whole.steps if s.on))
        first, stamp = self.apps[0], restore.job_stamp(facts)
        info = {"apps": ",".join(self.apps), "purge": "yes" if self.purge else "no"}
        spec = JobSpec("drop", first, f"drop-{first}-{stamp}", restore.holder(), info, here)
        asked = [Confirmation(tuple(keeps(self.apps, self.purge, self.repos)), first)]
        if self.purge:
            again = f"Second confirmation: every backup of {', '.join(self.apps)} will be deleted."
            asked.append(Confirmation((again,), f"purge {first}"))
        return Prepared(spec, tuple(asked))

    def render(self) -> list[str]:
        return super().render() + (self.after.render() if self.after.steps else [])

    def run(self, console: Console) -> Report:
        with contextlib.ExitStack() as stack:
            hosts = {s.on for s in self.after.steps if s.on}
            others = {h: stack.enter_context(HostSession(self.inventory.host(h))) for h in hosts}
            run_job(self.session, self.prepared.spec, console)
            execute(self.after, self.session, console, others=others)
        kept = "" if self.purge else "; its backups are kept"
        return Report([f"{name} dropped on {self.host.name}{kept}" for name in self.apps])
