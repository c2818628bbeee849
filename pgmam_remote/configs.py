"""The files pgmam owns on a server: their paths and their exact contents (pure).

Every file starts with the MARKER line so that pgmam can tell its own files
from an operator's, and never edits postgresql.conf itself.
"""

from __future__ import annotations

from . import server_code
from .command import Command
from .facts import MARKER, PGBACKREST_CONF_D

# Full backups (and the WAL they need) are kept this many days, whatever number of backups that is:
# every extra full backup (`inv backup --type full`) would otherwise push the oldest one out.
RETENTION_DAYS = 14
ARCHIVE_QUEUE_MAX = "4GiB"
ARCHIVE_TIMEOUT_S = 60


def write_file(path: str, content: str, owner: str = "root:root", mode: str = "0644") -> Command:
    """Atomically write a file (temp file + rename) with owner and mode."""
    return server_code.step("write-file", path, owner, mode, content)


def write_secret(path: str, content: str, owner: str, mode: str, label: str) -> Command:
    """:func:`write_file` with the content on stdin: it holds a secret, which never goes in a
    command line (``label`` stands for it in --dry-run)."""
    return server_code.step("write-file", path, owner, mode).with_stdin(content, label)


def stanza_conf_path(app: str) -> str:
    return f"{PGBACKREST_CONF_D}/{app}.conf"


def pg_conf_path(version: int, app: str) -> str:
    return f"/etc/postgresql/{version}/{app}/conf.d/pgmam.conf"


def data_dir(version: int, app: str) -> str:
    return f"/var/lib/postgresql/{version}/{app}"


def process_max(cpu_count: int) -> int:
    """Parallel backup/restore processes: every core on small servers, capped to leave room on big ones."""
    return max(1, min(cpu_count, 4))


def global_conf(cpu_count: int) -> str:
    """pgBackRest's global config: fast by default (zst, start-fast, parallel, async archiving)."""
    procs = process_max(cpu_count)
    return f"""{MARKER}
# Global pgBackRest settings for every app on this server; one stanza per app
# lives in {PGBACKREST_CONF_D}/<app>.conf. Written once by pgmam; edit with care.
[global]
repo1-path=/var/lib/pgbackrest
repo1-retention-full={RETENTION_DAYS}
repo1-retention-full-type=time
compress-type=zst
compress-level=1
start-fast=y
process-max={procs}
archive-async=y
spool-path=/var/spool/pgbackrest
archive-push-queue-max={ARCHIVE_QUEUE_MAX}
log-level-console=warn
log-level-file=info
log-path=/var/log/pgbackrest

[global:archive-push]
process-max={max(1, procs // 2)}

[global:archive-get]
process-max={procs}
"""


def stanza_conf(app: str, version: int, port: int, parent: str | None = None) -> str:
    branch = f"# pgmam-parent {parent}\n" if parent else ""
    return f"""{MARKER}
{branch}# pgBackRest stanza for app {app} (PostgreSQL {version}/{app}, port {port}).
[{app}]
pg1-path={data_dir(version, app)}
pg1-port={port}
pg1-socket-path=/var/run/postgresql
"""


def archive_conf(app: str) -> str:
    """conf.d/pgmam.conf: WAL archiving to this app's stanza."""
    return f"""{MARKER}
# WAL archiving to pgBackRest stanza '{app}'. Loaded through postgresql.conf's include_dir.
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --stanza={app} archive-push %p'
archive_timeout = {ARCHIVE_TIMEOUT_S}
"""


def snapshot(app: str, version: int) -> Command:
    """Store the cluster's config beside its newest backup (server/steps/config-snapshot.sh)."""
    return server_code.step("config-snapshot", app, version)
