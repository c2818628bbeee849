"""The restore machinery shared by pitr and rollback (and later verify/branch).

Pure step builders (each step knows its undo), backup selection along the
live cluster's timeline history, the preflight checks every restore shares,
and running a plan as a server-side job while rendering its journal.
"""

from __future__ import annotations

import getpass
import posixpath
import re
import socket
from dataclasses import dataclass
from datetime import datetime

from .. import configs
from ..console import Console
from ..errors import ConnectError, PgmamError, Refusal
from ..facts import BackupInfo, ClusterFacts, LockInfo, ServerFacts, parse_lsn
from ..job import LONG_STEP_DEADLINE_S, RUN_DIR, JobSpec, JobState, follow_command, launch_command
from ..plan import Step
from ..remote import Command, HostSession, sh

SPACE_MARGIN = 1.2
SPACE_SLACK_BYTES = 256 * 1024 * 1024

# -- scripts (constants; every input arrives as $1, $2, ...) ----------------------------

ARCHIVE_NOW = """set -e
cd /tmp
runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p "$1" -d postgres -c 'select txid_current()' > /dev/null
runuser -u postgres -- pgbackrest --stanza="$2" check
"""

RESTORE_STAGING = """set -e
app=$1; staging=$2; backup=$3; run=$4; port=$5; conf=$6; shift 6
install -d -o postgres -g postgres -m 0700 "$run" "$staging"
rm -rf "$run/staging.log" "$run/config"
cd /tmp
# its own spool: a restore empties the stanza's spool dir, where the live app's archiving queue lives
runuser -u postgres -- pgbackrest --stanza="$app" --pg1-path="$staging" --set="$backup" --spool-path="$run/spool" \\
  --target-action=promote "$@" restore
# the config as it was at that backup, when a snapshot exists (else the live one)
snapshot="/var/lib/pgbackrest/pgmam-config/$app/$backup.tar.gz"
if [ -f "$snapshot" ]; then
  install -d -o postgres -g postgres -m 0700 "$run/config"
  tar -xzf "$snapshot" -C "$run/config"
  chown -R postgres:postgres "$run/config"
  conf="$run/config/$app/postgresql.conf"
  echo "pgmam-note config=$snapshot"
fi
cat > "$staging/postgresql.conf" <<PGMAM_CONF
# pgmam staging instance: temporary and local only; removed before the swap
include = '$conf'
data_directory = '$staging'
external_pid_file = '$run/staging.pid'
port = $port
listen_addresses = ''
unix_socket_directories = '$run'
cluster_name = '$app-staging'
archive_mode = off
# its own safe settings, whatever the app's: messages in C to a log pgmam chooses, and never a
# second copy of the app's memory
lc_messages = 'C'
logging_collector = off
log_destination = 'stderr'
shared_buffers = '128MB'
huge_pages = off
PGMAM_CONF
chown postgres:postgres "$staging/postgresql.conf"
"""

# $4: how long it may take to become consistent (the step's deadline)
START_STAGING = """exec runuser -u postgres -- "/usr/lib/postgresql/$1/bin/pg_ctl" -D "$2" -l "$3/staging.log" \\
  -w -t "$4" start
"""

# Only a postmaster of THIS data dir: after a crash or a reboot the pid in its pid file may belong
# to any other process by now.
STOP_INSTANCE = """pid=$(head -n 1 "$2/postmaster.pid" 2> /dev/null) || exit 0
[ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2> /dev/null)" = "$2" ] || exit 0
exec runuser -u postgres -- "/usr/lib/postgresql/$1/bin/pg_ctl" -D "$2" -m "$3" -w -t 600 stop
"""

PROVE_RECOVERY = """set -u
sock=$1; port=$2; log=$3; old_tl=$4; data=$5
q() { runuser -u postgres -- psql -XAtq -h "$sock" -p "$port" -d postgres -c "$1" 2> /dev/null; }
while :; do
  [ "$(q 'select pg_is_in_recovery()')" = f ] && break
  pid=$(head -n 1 "$data/postmaster.pid" 2> /dev/null || true)
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ] || [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -c1)" = Z ]; then
    echo "the restored instance stopped during recovery:"
    tail -n 15 "$log"
    exit 1
  fi
  sleep 0.2
done
tl=$(q "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
if [ -z "$tl" ] || [ "$tl" -le "$old_tl" ]; then
  echo "the restored instance is not on a new timeline (timeline ${tl:-unknown}, live is on $old_tl)"
  exit 1
fi
# Why recovery stopped, from the new timeline's history file (never translated, whatever the
# server's language or logging): "before/after <commit>", "at restore point", "reached consistency".
history="$data/pg_wal/$(printf '%08X' "$tl").history"
stop=$(awk -F '\t' 'NF >= 3 { reason = $3 } END { print reason }' "$history" 2> /dev/null)
case $stop in
  "" | "no recovery target specified")
    echo "recovery did not stop at the target (timeline $tl history says: ${stop:-nothing})"
    tail -n 15 "$log"
    exit 1 ;;
esac
echo "pgmam-note timeline=$tl"
echo "pgmam-note stop=$(printf '%s' "$stop" | tr ' ' '_')"
last=$(q "select to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
[ -n "$last" ] && echo "pgmam-note last_tx=$(printf '%s' "$last" | tr ' ' '_')"
cp "$log" "$JOB_DIR/recovery.log" 2> /dev/null || true
"""

CLEAN_RESTORED = """set -e
rm -f "$1/postgresql.conf" "$1/recovery.signal" "$1/standby.signal"
if [ -f "$1/postgresql.auto.conf" ]; then
  sed -i -e '/^# Recovery settings generated by pgBackRest restore/,$d' \\
    -e '/^# Recovery settings generated by pgmam rollback/,$d' "$1/postgresql.auto.conf"
fi
"""

# After a promotion the recovery settings are inert, but they must not linger in the live config.
STRIP_RECOVERY_SETTINGS = """set -e
sed -i -e '/^# Recovery settings generated by pgmam rollback/,$d' "$1/postgresql.auto.conf"
"""

# The copy promoted with archiving off (so it never competes with the live cluster's archiver):
# its timeline history file must still reach the stanza, or no later restore could follow it.
PUSH_HISTORY = """set -e
cd /tmp
for h in "$2"/pg_wal/*.history; do
  [ -f "$h" ] && runuser -u postgres -- pgbackrest --stanza="$1" --pg1-path="$2" --no-archive-async archive-push "$h"
done
"""

# A new cluster (pitr --into, branch) gets the source's config as it was at the backup: its
# postgresql.conf with paths, port and name rewritten, pg_hba/pg_ident, and conf.d (but the
# archiving file, which the new app gets for its own stanza). $1 source $2 new $3 version
# $4 port $5 backup label.
APPLY_SNAPSHOT = """set -e
src=$1; new=$2; v=$3; port=$4; backup=$5
snap=/var/lib/pgbackrest/pgmam-config/$src/$backup.tar.gz
if [ ! -f "$snap" ]; then echo "no config snapshot for backup $backup: the new app keeps default settings"; exit 0; fi
tmp=$(mktemp -d)
tar -xzf "$snap" -C "$tmp"
dst=/etc/postgresql/$v/$new
sed -e "s|/$v/$src\\([/']\\)|/$v/$new\\1|g" -e "s|$v-$src\\.pid|$v-$new.pid|g" \\
  -e "s|^port = [0-9]*|port = $port|" -e "s|^cluster_name = .*|cluster_name = '$v/$new'|" \\
  "$tmp/$src/postgresql.conf" > "$dst/postgresql.conf"
cp "$tmp/$src/pg_hba.conf" "$tmp/$src/pg_ident.conf" "$dst/"
for f in "$tmp/$src"/conf.d/*.conf; do
  if [ -f "$f" ] && [ "$(basename "$f")" != pgmam.conf ]; then cp "$f" "$dst/conf.d/"; fi
done
chown -R postgres:postgres "$dst"
rm -rf "$tmp"
echo "pgmam-note config=$snap"
"""

# A branch replaced by its parent's data starts a new lineage: its stanza and archive queue start
# over, while it is stopped (its new WAL may reuse names its old WAL had). $1 the app.
RESET_STANZA = """set -e
cd /tmp
runuser -u postgres -- pgbackrest --stanza="$1" stop
runuser -u postgres -- pgbackrest --stanza="$1" --force stanza-delete
runuser -u postgres -- pgbackrest --stanza="$1" start
rm -rf "/var/spool/pgbackrest/archive/$1"
runuser -u postgres -- pgbackrest --stanza="$1" --no-online stanza-create
"""

# Undo of stopping a cluster. At boot (pgmam-recover.service) the clusters wait for the recovery,
# and systemd starts them right after it: asking for a start then would wait forever. While the
# server shuts down, systemd refuses to start anything; the next boot starts it.
START_UNLESS_BOOTING = """if [ -n "${PGMAM_AT_BOOT:-}" ]; then echo "at boot: systemd starts $1/$2 next"; exit 0; fi
if [ "$(systemctl is-system-running 2> /dev/null)" = stopping ]; then
  echo "shutting down: the next boot starts $1/$2"
  exit 0
fi
exec pg_ctlcluster "$1" "$2" start
"""

# Undo of starting a cluster: stop it if it runs (after a power cut it does not).
STOP_IF_RUNNING = """pg_ctlcluster "$1" "$2" status > /dev/null 2>&1 || exit 0
exec pg_ctlcluster --mode fast "$1" "$2" stop
"""

STOP_LIVE = """runuser -u postgres -- psql -XAtq -p "$3" -d postgres -c checkpoint > /dev/null 2>&1 || true
echo "pgmam-note down_at=$(date +%s.%N)"
exec pg_ctlcluster --mode fast "$1" "$2" stop
"""

# Undo of a move: put the dir back (or aside) if it had moved; nothing if the move never happened
# (a crash can come just before or just after a rename). $3 = discard: a restored copy, removed
# instead of kept aside when a crash is being recovered: nobody will look at it, and the backups
# can make it again.
MOVE_BACK = """[ -e "$1" ] || exit 0
if [ "${3:-}" = discard ] && [ -n "${PGMAM_RECOVERING:-}" ]; then exec rm -rf -- "$1"; fi
if [ -e "$2" ]; then echo "$2 already exists"; exit 1; fi
exec mv -T "$1" "$2"
"""

MOVE = """if [ -e "$2" ]; then echo "$2 already exists"; exit 1; fi
exec mv -T "$1" "$2"
"""

# Starts a cluster and notes the moment it accepts connections: pg_isready's exit status (no
# message to read) every 50 ms while pg_ctlcluster, which polls far less often, waits for it too.
START_LIVE = """pg_ctlcluster "$1" "$2" start &
starter=$!
up=""
while [ -z "$up" ] && kill -0 "$starter" 2> /dev/null; do
  if pg_isready -q -h /var/run/postgresql -p "$3"; then up=$(date +%s.%N); else sleep 0.05; fi
done
wait "$starter" || exit
[ -n "$up" ] || up=$(date +%s.%N)
echo "pgmam-note up_at=$up"
"""

VERIFY_LIVE = """set -u
port=$1; want=$2
tl="('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
q() { runuser -u postgres -- psql -XAtq -F ' ' -v ON_ERROR_STOP=1 -p "$port" -d postgres -c "$1" 2>&1; }
i=0
until [ "$(q 'select pg_is_in_recovery()')" = f ]; do
  i=$((i + 1))
  [ $i -lt 3000 ] || { echo "the cluster is still in recovery"; exit 1; }
  sleep 0.2
done
row=$(q "select $tl, txid_current()") || { echo "the cluster does not accept writes: $row"; exit 1; }
set -- $row
case "$want" in
  noted) expected=$(sed -n 's/^timeline=//p' "$JOB_DIR/notes" | tail -n 1)
    [ "$1" = "$expected" ] || { echo "the cluster is on timeline $1, expected $expected"; exit 1; } ;;
  new) before=$(sed -n 's/^from_timeline=//p' "$JOB_DIR/notes" | tail -n 1)
    [ "$1" -gt "$before" ] || { echo "the cluster is on timeline $1, not on a new one after $before"; exit 1; } ;;
esac
echo "pgmam-note live_timeline=$1"
"""

# A preserved data dir goes back on a NEW timeline: continuing its old, lower timeline after a
# higher one exists would let pgBackRest's expire (which orders WAL by name) drop WAL it needs.
# No recovery target: it replays its own timeline to its end (nothing was written there since it
# was preserved) and promotes; 'immediate' fails on a cleanly stopped cluster ("redo is not required").
PREPARE_PROMOTE = """set -e
version=$1; data=$2; app=$3
tl=$("/usr/lib/postgresql/$version/bin/pg_controldata" "$data" | sed -n "s/^Latest checkpoint's TimeLineID: *//p")
echo "pgmam-note from_timeline=$tl"
cat >> "$data/postgresql.auto.conf" <<PGMAM_CONF
# Recovery settings generated by pgmam rollback: promote to a new timeline, then removed
restore_command = 'pgbackrest --stanza=$app archive-get %f "%p"'
recovery_target_timeline = 'current'
PGMAM_CONF
touch "$data/recovery.signal"
chown postgres:postgres "$data/recovery.signal" "$data/postgresql.auto.conf"
"""

# incr is safe after a restore or rollback: pgBackRest copies every file whose size or timestamp
# differs from the prior backup and turns on checksums when timestamps go backwards. With no prior
# full backup (a new app) it takes a full one. Then the config snapshot. $1 app, $2 version, $3 type.
BACKUP_NOW = (
    """set -e
cd /tmp
runuser -u postgres -- pgbackrest --stanza="$1" check
runuser -u postgres -- pgbackrest --stanza="$1" --type="$3" backup
"""
    + configs.SNAPSHOT
)


# -- pure helpers ---------------------------------------------------------------------


def stamp(moment: datetime) -> str:
    """UTC time of the operation, as it appears in job ids and preserved dir names."""
    return moment.strftime("%Y%m%dT%H%M%SZ")


def holder() -> str:
    """Who runs this, as recorded in the lock and the audit line (no spaces)."""
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    return re.sub(r"[^A-Za-z0-9@._-]", "_", who)


def backup_on_lineage(backup: BackupInfo, cluster: ClusterFacts, timeline: int) -> bool:
    """Can WAL replay get from this backup onto ``timeline``? (abandoned timelines cannot)"""
    if backup.error or backup.timeline is None:
        return False
    if backup.timeline == timeline:
        return True
    for parent, switch_lsn in cluster.history:
        if parent == backup.timeline:
            return backup.lsn_stop is not None and parse_lsn(backup.lsn_stop) <= switch_lsn
    return False


def usable_backups(cluster: ClusterFacts, backups: tuple[BackupInfo, ...]) -> list[BackupInfo]:
    timeline = cluster.timeline or 1
    return [b for b in backups if backup_on_lineage(b, cluster, timeline)]


def choose_backup(host: str, cluster: ClusterFacts, backups: tuple[BackupInfo, ...], target: datetime) -> BackupInfo:
    """The newest backup on the live timeline's lineage that ended before the target."""
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
    return before[-1]


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
        # another app's backup is no reason to wait; its restore or drill is (disk space, I/O)
        if lock.alive and lock.info.get("op") != "backup":
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
        sh(ARCHIVE_NOW, cluster.port, cluster.name),
    )


def stop_live_step(cluster: ClusterFacts) -> Step:
    v, app = cluster.version, cluster.name
    return Step(
        f"stop {app} (downtime starts)",
        sh(STOP_LIVE, v, app, cluster.port),
        undo=sh(START_UNLESS_BOOTING, v, app),
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
            sh(RESTORE_STAGING, cluster.name, paths.staging, backup.label, paths.run, port, conf, *target_args),
            long=True,
            undo=None if keep_failed else Command.of("rm", "-rf", "--", paths.staging),
            undo_if_failed=True,
        ),
        Step(
            f"start a temporary local-only instance on the restored copy (port {port}, no TCP)",
            sh(START_STAGING, v, paths.staging, paths.run, LONG_STEP_DEADLINE_S),
            long=True,
            undo=sh(STOP_INSTANCE, v, paths.staging, "immediate"),
        ),
        Step(
            "replay WAL to the target and prove it (stopped at the target, out of recovery, new timeline)",
            sh(PROVE_RECOVERY, paths.run, port, f"{paths.run}/staging.log", cluster.timeline or 1, paths.staging),
            long=True,
        ),
        *(
            [Step("archive the new timeline's history file", sh(PUSH_HISTORY, cluster.name, paths.staging))]
            if push_history
            else []
        ),
        Step("stop the temporary instance", sh(STOP_INSTANCE, v, paths.staging, "fast")),
        Step("remove staging-only and recovery settings from the restored copy", sh(CLEAN_RESTORED, paths.staging)),
    ]


def swap_steps(
    cluster: ClusterFacts, incoming: str, paths: Paths, *, already_stopped: bool, rollback_to: str | None = None
) -> list[Step]:
    """Stop (unless already stopped), preserve the live dir, move ``incoming`` in, start, verify, back up.

    For a pitr the incoming dir is the proven restored copy, already on its new
    timeline. For a rollback (``rollback_to`` = where the preserved dir goes
    back if this fails) it is a preserved dir, which is promoted to a new
    timeline as it starts.
    """
    v, app = cluster.version, cluster.name
    steps = [] if already_stopped else [stop_live_step(cluster)]
    steps += [
        Step(
            f"preserve the current data as {paths.preserved}",
            sh(MOVE, paths.data, paths.preserved),
            undo=sh(MOVE_BACK, paths.preserved, paths.data),
            undo_if_failed=True,
        ),
        Step(
            f"move {incoming} into place",
            sh(MOVE, incoming, paths.data),
            undo=sh(MOVE_BACK, paths.data, rollback_to or paths.failed, "keep" if rollback_to else "discard"),
            undo_if_failed=True,
        ),
    ]
    if rollback_to:
        steps.append(
            Step(
                "set it to promote to a new timeline when it starts",
                sh(PREPARE_PROMOTE, v, paths.data, app),
                undo=sh(CLEAN_RESTORED, paths.data),
            )
        )
    steps += [
        Step(
            f"start {app}",
            sh(START_LIVE, v, app, cluster.port),
            undo=sh(STOP_IF_RUNNING, v, app),
        ),
        Step(
            f"verify {app} accepts writes on its new timeline",
            sh(VERIFY_LIVE, cluster.port, "new" if rollback_to else "noted"),
            commit=True,
        ),
    ]
    if rollback_to:
        steps.append(Step("remove the recovery settings", sh(STRIP_RECOVERY_SETTINGS, paths.data)))
    steps.append(
        Step("prove archiving and take a backup on the new timeline", sh(BACKUP_NOW, app, v, "incr"), long=True)
    )
    return steps


# -- running a job --------------------------------------------------------------------------


class JobFailed(PgmamError):
    """A server-side job ended in anything but ok; the message says where everything is."""

    def __init__(self, message: str, hint: str | None, logs: list[str]) -> None:
        super().__init__(message, hint)
        self.logs = logs

    def tail(self) -> list[str]:
        return self.logs[-15:]


def launch(session: HostSession, spec: JobSpec, facts: ServerFacts) -> None:
    session.run(launch_command(spec, facts.systemd))


def run_job(
    session: HostSession, spec: JobSpec, facts: ServerFacts, console: Console, undone: str | None = None
) -> JobState:
    """Launch the job, follow its journal to the end; anything but ok raises JobFailed."""
    launch(session, spec, facts)
    state = follow(session, spec.dir, console)
    if state.result != "ok":
        raise outcome_error(session.host.name, spec.app, state, f"job journal: {spec.dir}/journal", undone)
    return state


def follow(session: HostSession, job_dir: str, console: Console) -> JobState:
    """Render the job's journal as it grows, until the job ends."""
    state = JobState()
    host = session.host.name

    def on_line(line: str, is_stderr: bool) -> None:
        if is_stderr:
            return
        event = state.apply(line)
        if event is None:
            return
        kind, details = event
        if kind == "start":
            n, _, title = details.partition(" ")
            console.step(host, int(n), state.total, title)
        elif kind == "fail":
            console.warning(f"{host}: step {details.split()[0]} failed")
        elif kind == "log":
            console.remote_line(host, details, is_stderr=True)
        elif kind == "undo":
            step = state.steps.get(int(details))
            console.warning(f"{host}: undoing: {step.title if step else details}")
        elif kind == "undo-failed":
            console.failure("undo failed", f"{host}: could not undo step {details}")
        elif kind == "note" and details.startswith("stale_lock="):
            console.warning(f"{host}: took over a stale lock ({details.split('=', 1)[1]})")

    try:
        session.run(follow_command(job_dir), on_line=on_line, check=False)
    except ConnectError as exc:
        raise ConnectError(
            exc.message,
            hint=f"the job keeps running on the server ({job_dir}); re-run the same command to re-attach",
        ) from None
    return state


def outcome_error(host: str, app: str, state: JobState, where: str, undone: str | None = None) -> JobFailed:
    """Turn a non-ok job result into one clear error saying what happened and where things are."""
    failed = state.failed_step
    step = f"step {failed.n} ({failed.title})" if failed else "a step"
    if state.result == "locked":
        return JobFailed(f"{host}: {app} is busy: {state.detail}", "wait for it, then re-run", [])
    if state.result == "rolled-back":
        undone = undone or f"everything was rolled back: {app} runs on its previous data"
        return JobFailed(f"{host}: {step} failed; {undone}", where, state.logs)
    if state.result == "failed":
        return JobFailed(f"{host}: {step} failed before anything was changed", where, state.logs)
    if state.result == "rollback-failed":
        return JobFailed(
            f"{host}: {step} failed AND the rollback did not complete: {app} needs attention now",
            f"{where}; the job's logs are on the server",
            state.logs,
        )
    return JobFailed(
        f"{host}: the job stopped without finishing ({state.detail or 'no end in its journal'})", where, []
    )
