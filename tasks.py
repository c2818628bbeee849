"""pgmam tasks: run on the operator's laptop, act on servers over SSH.

Thin by design: arguments, help text, confirmation, then one call into
pgmam_remote. Errors become one clear line and an exit status here and only
here: 0 done, 1 refused or failed, 2 bad usage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from invoke import Collection, Exit, task

from pgmam_remote import inventory, sandbox, validate
from pgmam_remote.console import get_console
from pgmam_remote.errors import PgmamError, RemoteCommandError, UsageError
from pgmam_remote.ops import initcluster as initcluster_op
from pgmam_remote.ops import status as status_op
from pgmam_remote.plan import PlanFailed


def edge(body: Callable[..., Any]) -> Callable[..., Any]:
    """Turn PgmamError into a one-line message + exit status (the only place that does)."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except PgmamError as exc:
            details = exc.tail() if isinstance(exc, PlanFailed | RemoteCommandError) else []
            get_console().failure(exc.label, exc.message, exc.hint, details)
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            get_console().failure("interrupted", "stopped by the user; re-run the same command to resume")
            raise Exit(code=130) from None

    return wrapper


def require(**flags: Any) -> None:
    """Missing required flags are bad usage (exit 2), said in one line."""
    missing = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}", hint="see `inv -h TASK` for every flag and an example")


@task(
    auto_shortflags=False,
    help={
        "host": "inventory name of the server (required)",
        "app": "app name: becomes the cluster, stanza and directory name; ^[a-z][a-z0-9_]{0,39}$ (required)",
        "port": "TCP port of the new cluster, 1024..65535, unused on that server (required)",
        "pg_version": "PostgreSQL major version; default: hosts.toml pg_version, else the newest installed",
        "dry_run": "print every step and the exact remote commands, change nothing",
        "verbose": "stream every line the remote commands print",
    },
)
@edge
def initcluster(c, host=None, app=None, port=None, pg_version=None, dry_run=False, verbose=False):
    """Create an app's PostgreSQL cluster, PITR-ready: archiving, stanza, first full backup.

    Idempotent: re-running after an interruption completes the missing steps;
    on a finished app it says so and changes nothing.

    Example: inv initcluster --host prod1 --app shop --port 5433
    """
    require(host=host, app=app, port=port)
    req = initcluster_op.InitClusterRequest(
        app=validate.app_name(app), port=validate.port(port), pg_version=validate.pg_version(pg_version)
    )
    target = inventory.load().host(host)
    console = get_console()
    summary = initcluster_op.run(target, req, console, dry_run=dry_run, verbose=verbose)
    if summary is None:
        return
    if summary.already_done:
        console.success(f"{summary.app} on {summary.host} is already PITR-ready; nothing changed")
    else:
        console.success(f"{summary.app} on {summary.host} is PITR-ready")
    for line in summary.lines():
        console.info(f"  {line}")


@task(
    auto_shortflags=False,
    iterable=["host"],
    help={
        "host": "inventory name of a server; repeat for several",
        "group": "a group from hosts.toml [groups]",
        "all_hosts": "every server in the inventory",
        "json": "write one JSON object to stdout instead of the table",
    },
)
@edge
def status(c, host=None, group=None, all_hosts=False, json=False):
    """Show every cluster, its backups, WAL archiving and disk space, per server.

    Servers are probed in parallel; an unreachable one is a row with its error.
    Exit status 0 when all is healthy, 1 when something needs attention.

    Example: inv status --all-hosts
    """
    hosts = inventory.load().select(host or [], group, all_hosts)
    statuses = status_op.collect(hosts)
    if not status_op.show(statuses, get_console(), as_json=json):
        raise Exit(code=1)


@task(name="up", auto_shortflags=False, help={"servers": "how many local servers to create (default 2)"})
@edge
def sandbox_up(c, servers=2):
    """Create local sandbox servers (namespaces + sshd + sudo) and their inventory. Needs root.

    Example: sudo inv sandbox.up --servers 2 && export PGMAM_HOSTS=.sandbox/hosts.toml
    """
    console = get_console()
    box = sandbox.up(int(servers), log=console.info)
    for server in box.servers:
        console.success(f"{server.name}: ssh {server.address} (namespace {server.netns})")
    console.info(f"inventory: {box.inventory}")
    console.info(f"use it:    export PGMAM_HOSTS={box.inventory}")


@task(name="down", auto_shortflags=False)
@edge
def sandbox_down(c):
    """Remove the sandbox servers: their processes, namespaces, links, users and files."""
    removed = sandbox.down(log=get_console().info)
    get_console().success(f"sandbox removed ({len(removed)} item(s))")


ns = Collection(initcluster, status)
ns.add_collection(Collection("sandbox", sandbox_up, sandbox_down))
