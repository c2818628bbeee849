"""The files pgmam owns on a server: their paths and their exact contents (pure).

Every file starts with the MARKER line so that pgmam can tell its own files
from an operator's, and never edits postgresql.conf itself.
"""

from __future__ import annotations

from .facts import MARKER, PGBACKREST_CONF_D
from .remote import Command, sh

# Full backups (and the WAL they need) are kept this many days, whatever number of backups that is:
# every extra full backup (`inv backup --type full`) would otherwise push the oldest one out.
RETENTION_DAYS = 14
ARCHIVE_QUEUE_MAX = "4GiB"
ARCHIVE_TIMEOUT_S = 60

_WRITE_FILE = (
    'set -e; mkdir -p -m 0755 "$(dirname "$2")"; umask 077; tmp="$2.pgmam-tmp"; printf "%s" "$1" > "$tmp"; '
    'chown "$3" "$tmp"; chmod "$4" "$tmp"; mv -f "$tmp" "$2"'
)


def write_file(path: str, content: str, owner: str = "root:root", mode: str = "0644") -> Command:
    """Atomically write a file (temp file + rename) with owner and mode."""
    return sh(_WRITE_FILE, content, path, owner, mode)


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


SNAPSHOT_DIR = "/var/lib/pgbackrest/pgmam-config"

# Shell: the label of $app's newest backup, from pgBackRest's "latest" link in the repository
# (no pgbackrest run), else from `pgbackrest info`; empty when there is none.
NEWEST_LABEL = """$(readlink "/var/lib/pgbackrest/backup/$app/latest" 2> /dev/null || (cd /tmp \\
  && runuser -u postgres -- pgbackrest --stanza="$app" --output=json info \\
  | grep -o '"label":"[^"]*"' | tail -n 1 | cut -d'"' -f4))"""

# Config snapshot: pgBackRest does not back up /etc/postgresql/<ver>/<app>/, so with every backup
# pgmam stores it in the repository, named after the newest backup label, and drops the snapshots
# of expired backups. $1 app, $2 version. Prints "pgmam-note snapshot=<file>".
SNAPSHOT = (
    """set -e
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
app=$1; version=$2
cd /tmp
label="""
    + NEWEST_LABEL
    + """
[ -n "$label" ] || { echo "no backup to attach the config snapshot to"; exit 1; }
dir=/var/lib/pgbackrest/pgmam-config/$app
install -d -o postgres -g postgres -m 0750 /var/lib/pgbackrest/pgmam-config "$dir"
tar -C "/etc/postgresql/$version" -czf "$dir/$label.tar.gz.tmp" "$app"
chown postgres:postgres "$dir/$label.tar.gz.tmp"
mv -f "$dir/$label.tar.gz.tmp" "$dir/$label.tar.gz"
for f in "$dir"/*.tar.gz; do
  [ -d "/var/lib/pgbackrest/backup/$app/$(basename "$f" .tar.gz)" ] || rm -f "$f"
done
echo "pgmam-note backup=$label"
echo "pgmam-note snapshot=$dir/$label.tar.gz"
"""
)


def snapshot(app: str, version: int) -> Command:
    return sh(SNAPSHOT, app, version)
