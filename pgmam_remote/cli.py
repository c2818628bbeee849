"""pgmam tasks: run on the operator's laptop, act on servers over SSH.

Thin by design: arguments, help text, confirmation, then one call into
pgmam_remote. Errors become one clear line and an exit status here and only
here: 0 done, 1 refused or failed, 2 bad usage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from invoke import Collection, Exit, Program, task

from pgmam_remote import inventory, runner, validate
from pgmam_remote.console import get_console
from pgmam_remote.errors import PgmamError, RemoteCommandError, UsageError
from pgmam_remote.ops import backup as backup_op
from pgmam_remote.ops import drop as drop_op
from pgmam_remote.ops import initcluster as initcluster_op
from pgmam_remote.ops import pitr as pitr_op
from pgmam_remote.ops import recover as recover_op
from pgmam_remote.ops import rollback as rollback_op
from pgmam_remote.ops import schedule as schedule_op
from pgmam_remote.ops import status as status_op
from pgmam_remote.ops import verify as verify_op
from pgmam_remote.ops import watch as watch_op
from pgmam_remote.plan import PlanFailed

HOST = "inventory name of the server (required)"
YES = "do not ask for confirmation (needed when there is no terminal)"
# how a task that acts on several servers selects them
SERVERS = {
    "host": "inventory name of a server; repeat for several",
    "group": "a group from hosts.toml [groups]",
    "all_hosts": "every server in the inventory",
}
DRY_RUN = "print the plan, each step with the command it runs on the server; change nothing"


def edge(body: Callable[..., Any]) -> Callable[..., Any]:
    """Turn PgmamError into a one-line message + exit status (the only place that does)."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except PgmamError as exc:
            details = exc.tail() if isinstance(exc, PlanFailed | RemoteCommandError | runner.JobFailed) else []
            get_console().failure(exc.label, exc.message, exc.hint, details)
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            get_console().failure(
                "interrupted",
                "stopped by the user; a job already started goes on on the server (inv status shows it)",
                "the same command re-attaches to it, or resumes",
            )
            raise Exit(code=130) from None

    return wrapper


def run(op: runner.Operation, dry_run: bool = False, yes: bool = False) -> None:
    runner.run(op, get_console(), dry_run=dry_run, yes=yes)


def require(**flags: Any) -> None:
    """Missing required flags are bad usage (exit 2), said in one line."""
    missing = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}", hint="see `inv -h TASK` for every flag and an example")


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "app name: becomes the cluster, stanza and directory name; ^[a-z][a-z0-9_]{0,39}$ (required)",
        "port": "TCP port of the new cluster, 1024..65535, unused on that server (required)",
        "pg_version": "PostgreSQL major version; default: hosts.toml pg_version, else the newest installed",
        "dry_run": DRY_RUN,
    },
)
@edge
def initcluster(c, host=None, app=None, port=None, pg_version=None, dry_run=False):
    """Create an app's PostgreSQL cluster, PITR-ready: archiving, stanza, first full backup.

    Idempotent: re-running after an interruption completes the missing steps;
    on a finished app it says so and changes nothing.

    Example: inv initcluster --host prod1 --app shop --port 5433
    """
    require(host=host, app=app, port=port)
    req = initcluster_op.InitClusterRequest(
        app=validate.app_name(app), port=validate.port(port), pg_version=validate.pg_version(pg_version)
    )
    hosts = inventory.load()
    run(initcluster_op.InitCluster(hosts, hosts.host(host), req), dry_run)


@task(
    auto_shortflags=False,
    iterable=["host"],
    help={**SERVERS, "json": "write one JSON object to stdout instead of the table"},
)
@edge
def status(c, host=None, group=None, all_hosts=False, json=False):
    """Show every cluster, its backups, WAL archiving and disk space, per server.

    Servers are probed in parallel; an unreachable one is a row with its error.
    Exit status 0 when all is healthy, 1 when something needs attention.

    Example: inv status --all-hosts
    """
    hosts = inventory.load()
    statuses = status_op.collect(hosts.select(host or [], group, all_hosts), inventory=hosts)
    if not status_op.show(statuses, get_console(), as_json=json):
        raise Exit(code=1)


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the app to restore (required)",
        "to": "target time WITH a zone: '2026-01-19 10:40:00+00' or 2026-01-19T10:40:00Z",
        "to_point": "instead of --to: a restore point made by `inv restore-point`",
        "into": "restore into a NEW app (cluster, stanza, backup) instead; the source is not touched",
        "port": "with --into: the new app's port",
        "stop_first": "stop the app before restoring (writes stop now; downtime = the whole restore)",
        "keep_failed": "keep the staging dir if the restore fails before the swap (for inspection)",
        "yes": YES,
        "dry_run": DRY_RUN,
    },
)
@edge
def pitr(
    c,
    host=None,
    app=None,
    to=None,
    to_point=None,
    into=None,
    port=None,
    stop_first=False,
    keep_failed=False,
    yes=False,
    dry_run=False,
):
    """Restore an app to a point in time: beside the live cluster, then a short swap.

    The app keeps serving while its backup is restored and replayed next to it;
    the only downtime is the swap (about a second). The current data is kept as
    old-APP-<time> beside it; any failure rolls back by itself. The work runs on
    the server and survives a dropped connection: re-run to re-attach.

    Examples:
      inv pitr --host prod1 --app shop --to "2026-01-19 10:40:00+00"
      inv pitr --host prod1 --app shop --to-point before-migration
      inv pitr --host prod1 --app shop --to 2026-01-19T10:40:00Z --into shop_copy --port 5440
    """
    require(host=host, app=app)
    if bool(to) == bool(to_point):
        raise UsageError("pass exactly one of --to and --to-point", hint="e.g. --to '2026-01-19 10:40:00+00'")
    if into and not port:
        raise UsageError("--into needs --port for the new app")
    if into and stop_first:
        raise UsageError("--stop-first does not apply to --into (the source is never stopped)")
    req = pitr_op.PitrRequest(
        app=validate.app_name(app),
        to=validate.target_time(to) if to else None,
        point=validate.restore_point(to_point) if to_point else None,
        stop_first=stop_first,
        into=validate.app_name(into) if into else None,
        port=validate.port(port) if into else None,
        keep_failed=keep_failed,
    )
    run(pitr_op.Pitr(inventory.load().host(host), req), dry_run, yes)


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the app to roll back (required)",
        "to": "a preserved dir (name or path) to swap in; default: the newest old-APP-*",
        "yes": YES,
        "dry_run": DRY_RUN,
    },
)
@edge
def rollback(c, host=None, app=None, to=None, yes=False, dry_run=False):
    """Swap an app back to its data from before the last pitr (or to --to DIR).

    The current data is preserved the same way (old-APP-<time>); nothing is deleted.

    Example: inv rollback --host prod1 --app shop
    """
    require(host=host, app=app)
    run(rollback_op.Rollback(inventory.load().host(host), validate.app_name(app), to), dry_run, yes)


@task(
    name="restore-point",
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the app (required)",
        "name": "a name to restore to later with `inv pitr --to-point NAME` (required)",
    },
)
@edge
def restore_point(c, host=None, app=None, name=None):
    """Mark this moment in an app's WAL by name, e.g. before a migration.

    Example: inv restore-point --host prod1 --app shop --name before-migration
    """
    require(host=host, app=app, name=name)
    lsn = pitr_op.create_restore_point(
        inventory.load().host(host), validate.app_name(app), validate.restore_point(name), get_console()
    )
    get_console().success(f"restore point {name} created in {app} at {lsn}")


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the app to back up",
        "all_apps": "every pgmam app on the server, one after another",
        "type": "full, diff or incr (default: incr once a full backup exists, else full)",
        "repo": "back up into this off-host repo (from hosts.toml [repos]) instead of the local one",
        "dry_run": DRY_RUN,
    },
)
@edge
def backup(c, host=None, app=None, all_apps=False, type=None, repo=None, dry_run=False):
    """Take a backup now (plus a snapshot of the app's PostgreSQL config).

    Examples:
      inv backup --host prod1 --app shop
      inv backup --host prod1 --all-apps --type full
      inv backup --host prod1 --app shop --repo vault
    """
    require(host=host)
    if bool(app) == bool(all_apps):
        raise UsageError("pass exactly one of --app and --all-apps")
    apps = [validate.app_name(app)] if app else None
    hosts = inventory.load()
    repo = hosts.repo(repo).name if repo else None
    run(backup_op.Backup(hosts.host(host), apps, type, repo), dry_run)


@task(
    auto_shortflags=False,
    iterable=["app"],
    help={
        "host": "the NEW server to rebuild the apps on (required)",
        "from": "the lost server, by its inventory name (required); it is not contacted",
        "app": "an app to recover; repeat for several",
        "all_apps": "every app the repo keeps of the lost server",
        "to": "restore to this time WITH a zone (default: the newest point the repo has)",
        "repo": "the off-host repo to recover from (default: the lost server's one repo)",
        "port": "with one --app: its port on the new server (default: the port it had)",
        "yes": YES,
        "dry_run": DRY_RUN,
    },
)
@edge
def recover(
    c, host=None, from_=None, app=None, all_apps=False, to=None, repo=None, port=None, yes=False, dry_run=False
):
    """Rebuild a lost server's apps on another server, from an off-host repo.

    The lost server is never contacted. Each app gets its cluster (same name and port),
    its data at --to or at the newest point the repo has, and the config its backup
    carries; it is proven, then the new server becomes its home: a local stanza and
    the off-host repo, each with a first full backup. The summary says what was lost.

    Examples:
      inv recover --host prod2 --from prod1 --all-apps
      inv recover --host prod2 --from prod1 --app shop --to "2026-01-19 10:40:00+00" --port 5440
      inv recover --host prod2 --from prod1 --all-apps --repo bucket   (S3: its keys in the environment)
    """
    require(host=host, **{"from": from_})
    if bool(app) == bool(all_apps):
        raise UsageError("pass --app NAME (repeatable) or --all-apps")
    if port and len(app or []) != 1:
        raise UsageError("--port applies to one --app")
    req = recover_op.RecoverRequest(
        source=validate.host_name(from_),
        apps=tuple(validate.app_name(a) for a in app or []),
        all_apps=all_apps,
        to=validate.target_time(to) if to else None,
        repo=repo,
        port=validate.port(port) if port else None,
    )
    hosts = inventory.load()
    run(recover_op.Recover(hosts, hosts.host(host), req), dry_run, yes)


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the app (required)",
        "json": "write one JSON object to stdout instead of the table",
    },
)
@edge
def backups(c, host=None, app=None, json=False):
    """List an app's backups and its recovery window (earliest restorable .. latest archived time).

    The local repo first, then each off-host repo the server backs up to, with the WAL still
    waiting to be shipped there.

    Example: inv backups --host prod1 --app shop --json
    """
    require(host=host, app=app)
    hosts = inventory.load()
    status_op.show_backups(hosts, hosts.host(host), validate.app_name(app), get_console(), as_json=json)


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the app (required)",
        "full": f"when to take full backups (default: '{schedule_op.DEFAULTS['full']}'; "
        f"with --repo '{schedule_op.REPO_DEFAULTS['full']}')",
        "diff": f"when to take differential backups (default: '{schedule_op.DEFAULTS['diff']}'; "
        f"with --repo '{schedule_op.REPO_DEFAULTS['diff']}')",
        "incr": "when to take incremental backups (default: none)",
        "verify": "when to run a restore drill of the newest backup, as `inv verify` does (default: none)",
        "repo": "schedule the backups into this off-host repo (from hosts.toml [repos]), and drills from it, "
        "instead of the local ones",
        "remove": "remove the app's schedule (with --repo: only that repo's backups and drills)",
        "dry_run": DRY_RUN,
    },
)
@edge
def schedule(
    c, host=None, app=None, full=None, diff=None, incr=None, verify=None, repo=None, remove=False, dry_run=False
):
    """Schedule an app's backups and restore drills: systemd timers, or /etc/cron.d where systemd is not PID 1.

    Times use the server's clock: 'hourly', 'daily', 'weekly', 'monthly', 'HH:MM',
    'Sun 03:00', 'Mon..Fri 02:30', 'Sat,Sun 04:00'. Re-running replaces the local schedule (or,
    with --repo, that repo's backups and drills). Every off-host repo that keeps the app gets
    backups too: by default an hour after the local ones, or as set with --repo.
    Each run takes the app's lock, and is skipped while another job (a pitr, a backup...) holds it.
    A failing scheduled backup or drill turns `inv status` red.

    Examples:
      inv schedule --host prod1 --app shop
      inv schedule --host prod1 --app shop --full "Sun 02:00" --diff "Mon..Sat 02:00" --incr hourly
      inv schedule --host prod1 --app shop --verify "Sun 05:00"
      inv schedule --host prod1 --app shop --repo vault --full "Sat 04:00" --diff daily --verify "Sun 06:00"
      inv schedule --host prod1 --app shop --remove
    """
    require(host=host, app=app)
    app = validate.app_name(app)
    asked = {"full": full, "diff": diff, "incr": incr, "verify": verify}
    if remove and any(asked.values()):
        raise UsageError("--remove takes no calendars")
    hosts = inventory.load()
    repo = hosts.repo(repo).name if repo else None
    run(schedule_op.Schedule(hosts.host(host), app, asked, repo, remove), dry_run)


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the app whose backups to prove (required)",
        "to": "drill a point-in-time restore to this time (with a zone) instead of the latest backup",
        "repo": "drill a backup in this off-host repo (from hosts.toml [repos]) instead of the local one",
        "on": "with --repo: run the drill on this other server (a disaster-recovery rehearsal)",
        "dry_run": DRY_RUN,
    },
)
@edge
def verify(c, host=None, app=None, to=None, repo=None, on=None, dry_run=False):
    """Restore drill: restore a backup into a throwaway instance and prove it, live cluster untouched.

    Proves: out of recovery, every database connects, pg_amcheck (heap + btree) when available,
    row counts per table. The result shows in `inv status` as "last proven restorable" (per repo
    for --repo, with how long the drill took). With --on, the other server reads the repo itself,
    as it would after losing --host, and only a throwaway copy is made there.

    Examples:
      inv verify --host prod1 --app shop
      inv verify --host prod1 --app shop --repo vault --on prod2
    """
    require(host=host, app=app)
    app = validate.app_name(app)
    if on and not repo:
        raise UsageError("--on needs --repo: a drill on another server reads an off-host repo")
    target = validate.target_time(to) if to else None
    hosts = inventory.load()
    if repo:
        run(
            verify_op.RepoDrill(hosts, hosts.host(host), hosts.repo(repo), app, target, hosts.host(on) if on else None),
            dry_run,
        )
    else:
        run(verify_op.Drill(hosts.host(host), app, target), dry_run)


@task(
    auto_shortflags=False,
    help={
        "host": HOST,
        "app": "the parent app (required)",
        "name": "the branch name; the branch app is APP_NAME (required)",
        "port": "the branch's port (default: the first free port above the parent's)",
        "at": "branch from the parent as of this time (with a zone); default: now",
        "sync": "replace an existing branch's data with the parent's current state (old data preserved)",
        "yes": YES,
        "dry_run": DRY_RUN,
    },
)
@edge
def branch(c, host=None, app=None, name=None, port=None, at=None, sync=False, yes=False, dry_run=False):
    """A writable copy of an app as a new app APP_NAME: own cluster, port, stanza, first backup.

    Made from the parent's backups and archived WAL; the parent is never stopped or changed.
    The branch starts with the parent's config as of that backup.

    Examples:
      inv branch --host prod1 --app shop --name staging
      inv branch --host prod1 --app shop --name before_bug --at "2026-01-19 10:40:00+00" --port 5450
      inv branch --host prod1 --app shop --name staging --sync
    """
    require(host=host, app=app, name=name)
    app = validate.app_name(app)
    child = validate.app_name(f"{app}_{name}")
    if sync:
        if port or at:
            raise UsageError("--sync takes no --port or --at (the branch keeps its port; it syncs to now)")
        run(pitr_op.Sync(inventory.load().host(host), child), dry_run, yes)
        return
    req = pitr_op.PitrRequest(
        app=app,
        to=validate.target_time(at) if at else None,
        into=child,
        port=validate.port(port) if port else None,
        branch=True,
    )
    run(pitr_op.Pitr(inventory.load().host(host), req), dry_run, yes)


@task(
    auto_shortflags=False,
    iterable=["app"],
    help={
        "host": HOST,
        "app": "the app to drop (required); repeat to drop an app together with its branches",
        "purge_backups": "ALSO delete the stanza, every backup and archived WAL (asks a second time)",
        "yes": YES,
        "dry_run": DRY_RUN,
    },
)
@edge
def dropcluster(c, host=None, app=None, purge_backups=False, yes=False, dry_run=False):
    """Drop an app's cluster, after a final backup; its backups are kept unless --purge-backups.

    --purge-backups deletes them in the local repo and in every off-host repo that keeps the app.

    A dropped app whose backups were kept comes back with:
      inv pitr --host H --app APP --to TIME --into NEW --port P

    Example: inv dropcluster --host prod1 --app oldshop
    """
    require(host=host, app=app)
    hosts = inventory.load()
    run(drop_op.Drop(hosts, hosts.host(host), [validate.app_name(a) for a in app], purge_backups), dry_run, yes)


@task(
    auto_shortflags=False,
    iterable=["host"],
    help={
        **SERVERS,
        "remove": "stop the watchdog and remove its timer, config, state and metrics file",
        "dry_run": DRY_RUN,
    },
)
@edge
def watchdog(c, host=None, group=None, all_hosts=False, remove=False, dry_run=False):
    """Set up (or update) each server's watchdog from hosts.toml's [notify] and [watchdog].

    The watchdog runs on the server from a systemd timer (cron without systemd), every 5 min by
    default. It makes the checks `inv status` shows, sends one alert when an app turns unhealthy,
    one when it recovers and a reminder every 4 h in between, and writes Prometheus metrics for
    node_exporter. Re-run it after editing [notify] or [watchdog]. See docs/monitoring.md.

    Example: inv watchdog --all-hosts
    """
    hosts = inventory.load()
    for chosen in hosts.select(host or [], group, all_hosts):
        run(watch_op.Watchdog(hosts, chosen, remove=remove), dry_run)


@task(
    auto_shortflags=False,
    help={"host": HOST, "test": "send a test message through each channel the server's watchdog has (required)"},
)
@edge
def notify(c, host=None, test=False):
    """Have a server's watchdog send a test message; say whether each channel took it.

    The message goes from the server itself, as its alerts do, with the config `inv watchdog`
    put there. Exit status 0 when every channel took it, 1 when one did not.

    Example: inv notify --test --host prod1
    """
    require(host=host)
    if not test:
        raise UsageError("inv notify only sends a test message for now", hint="inv notify --test --host NAME")
    if not watch_op.send_test(inventory.load().host(host), get_console()):
        raise Exit(code=1)


@task(
    auto_shortflags=False,
    help={"host": HOST, "app": "judge this app only (and not the server's own checks)"},
)
def check(c, host=None, app=None):
    """A Nagios/Icinga plugin: `inv status`'s checks of one server, as one line and an exit code.

    0 OK, 1 WARNING (a leftover copy, alerts that cannot be delivered), 2 CRITICAL (anything that
    puts an app's recovery at risk), 3 UNKNOWN (unreachable, bad usage). The line carries perfdata:
    the number of apps and of unhealthy ones, each app's backup and archive age.

    Example: inv check --host prod1 --app shop
    """
    try:
        require(host=host)
        hosts = inventory.load()
        chosen = hosts.host(host)
        (status_row,) = status_op.collect([chosen], inventory=hosts)
        result = watch_op.check_result(status_row, validate.app_name(app) if app else None)
    except PgmamError as exc:
        result = watch_op.CheckResult(watch_op.UNKNOWN, f"PGMAM UNKNOWN - {exc.message}")
    print(result.line)
    raise Exit(code=result.code)


TASKS = (
    initcluster,
    status,
    pitr,
    rollback,
    restore_point,
    backup,
    backups,
    schedule,
    verify,
    branch,
    dropcluster,
    recover,
    watchdog,
    notify,
    check,
)


def collection() -> Collection:
    """The operator's tasks; the checkout's tasks.py adds the sandbox's."""
    return Collection(*TASKS)


def main() -> None:
    """The `pgmam` command: the same tasks as `inv` in the checkout, from any directory."""
    Program(namespace=collection(), name="pgmam", binary="pgmam", version=version("pgmam")).run()
