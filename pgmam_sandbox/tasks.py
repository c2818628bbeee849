"""The sandbox's tasks (`inv sandbox.up` and the rest), for tests, `make demo` and rehearsals.

The checkout's tasks.py adds them to the operator's tasks; the installed `pgmam` command does not
load them, so an operator's run never imports the sandbox (which acts on this machine as root).
"""

from __future__ import annotations

from invoke import Collection, task

import pgmam_sandbox as sandbox
from pgmam_remote.cli import edge, require
from pgmam_remote.console import get_console
from pgmam_remote.errors import UsageError


@task(
    name="up",
    auto_shortflags=False,
    help={
        "servers": "how many local servers to create (default 2)",
        "plain": "servers without systemd (schedules run from cron), instead of systemd-booted Debian 12",
        "s3": "also run an S3-compatible server (Ceph radosgw) on the sandbox network, as repo `bucket`; "
        "needs systemd servers",
    },
)
@edge
def sandbox_up(c, servers=2, plain=False, s3=False):
    """Create local Debian 12 servers, booted with systemd as PID 1, and their inventory. Needs root.

    Each server is a systemd-nspawn machine with its own network address, sshd, sudo users,
    PostgreSQL 15 and pgBackRest. The first run builds the server image (about a minute).
    With --s3, a single-node Ceph (about 20 s more) serves S3 at s3.pgmam.test, which the servers
    resolve; the inventory names it repo `bucket`, and s3.env beside it holds its keys.

    Example: sudo inv sandbox.up --servers 2 && export PGMAM_HOSTS=/var/lib/pgmam-sandbox/sandbox-<id>/hosts.toml
    """
    console = get_console()
    box = sandbox.up(int(servers), log=console.info, systemd=not plain, s3=s3)
    for server in box.servers:
        kind = f"machine {server.machine}" if server.systemd else f"namespace {server.netns}"
        console.success(f"{server.name}: ssh {server.address} ({kind})")
    if s3:
        console.success(f"S3: https://{sandbox.S3_NAME}:{sandbox.S3_PORT} (repo `{sandbox.S3_REPO}` in the inventory)")
    console.info(f"inventory: {box.inventory}")
    console.info(f"use it:    export PGMAM_HOSTS={box.inventory}")
    if s3:
        console.info(f"S3 keys:   source {box.state_dir / 's3.env'}")


@task(name="down", auto_shortflags=False)
@edge
def sandbox_down(c):
    """Remove the sandbox: its servers (machines, processes, namespaces, links, users, files) and its S3 server."""
    removed = sandbox.down(log=get_console().info)
    get_console().success(f"sandbox removed ({len(removed)} item(s))")


@task(
    name="reboot",
    auto_shortflags=False,
    help={
        "host": "sandbox server to reboot (e.g. sbx1)",
        "power_cut": "kill every process at once instead of a clean shutdown",
    },
)
@edge
def sandbox_reboot(c, host=None, power_cut=False):
    """Reboot a sandbox server, or cut its power, to rehearse what a real server does after one.

    A clean reboot stops every service in order. A power cut kills every process at once, with no
    shutdown; /run and /tmp come back empty. Either way systemd boots the server again and starts
    what is enabled, its PostgreSQL clusters included.

    Example: sudo inv sandbox.reboot --host sbx1 --power-cut
    """
    sandbox.reboot(sandbox_server(host), log=get_console().info, power_cut=power_cut)
    get_console().success(f"{host} is back up")


@task(name="lose", auto_shortflags=False, help={"host": "sandbox server to destroy (e.g. sbx1)"})
@edge
def sandbox_lose(c, host=None):
    """Destroy a sandbox server as a disaster would, to rehearse `inv recover`: its network cut,
    its PostgreSQL killed and its data wiped. Only `inv sandbox.down` removes it.

    Example: sudo inv sandbox.lose --host sbx1 && inv recover --host sbx2 --from sbx1 --all-apps
    """
    sandbox.lose(sandbox_server(host), log=get_console().info)
    get_console().success(f"{host} is lost")


def sandbox_server(host: str | None) -> sandbox.SandboxServer:
    require(host=host)
    box = sandbox.current()
    server = next((s for s in box.servers if s.name == host), None) if box else None
    if server is None:
        raise UsageError(f"no sandbox server {host!r}", hint="`inv sandbox.up` lists the servers it creates")
    return server


ns = Collection("sandbox", sandbox_up, sandbox_down, sandbox_reboot, sandbox_lose)
