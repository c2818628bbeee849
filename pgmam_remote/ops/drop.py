"""dropcluster: remove an app's cluster, keeping its backups unless told otherwise.

A running app gets a final backup first (which also proves archiving still works). The
stanza, its backups, config snapshots and the stanza config stay, so `inv pitr --into` can
bring the app back later; `--purge-backups` deletes them too, in the local repo and in every
off-host repo that keeps the app. An app with branches
(clusters made from it by `inv branch`) is refused unless the branches are named as well.
"""

from __future__ import annotations

import contextlib

from .. import server_code
from ..console import Console
from ..errors import Refusal
from ..facts import ServerFacts
from ..inventory import Inventory, Repo
from ..job import LONG_STEP_DEADLINE_S
from ..plan import Plan, Step, execute
from ..remote import Command, HostSession
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


def run(plan: Plan, session: HostSession, inventory: Inventory, console: Console) -> None:
    """Run the drop; the repository hosts a purge deletes from are reached before anything changes."""
    with contextlib.ExitStack() as stack:
        others = {v: stack.enter_context(HostSession(inventory.host(v))) for v in {s.on for s in plan.steps if s.on}}
        execute(plan, session, console, others=others)
