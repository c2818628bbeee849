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

from ..errors import Refusal
from ..facts import ClusterFacts, ServerFacts
from ..job import LONG_STEP_DEADLINE_S, JobSpec
from ..plan import Plan, Step
from ..remote import Command, sh
from . import restore
from .restore import Paths

RESULTS_DIR = "/var/lib/pgmam/verify"

# $1 socket dir, $2 port, $3 version, $4 app, $5 backup label, $6 target text. Writes the result.
DRILL = f"""set -u
sock=$1; port=$2; version=$3; app=$4; backup=$5; target=$6
q() {{ runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -h "$sock" -p "$port" "$@"; }}
dbs=$(q -d postgres -c "select datname from pg_database where datallowconn order by 1") || exit 1
tables=0; rows=0
for db in $dbs; do
  q -d "$db" -c 'select 1' > /dev/null || {{ echo "database $db does not accept connections"; exit 1; }}
  counts=$(q -d "$db" -c "select format('%s.%s', n.nspname, c.relname), (xpath('/row/n/text()',
      query_to_xml(format('select count(*) as n from %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg_toast%' order by 1") || {{ echo "counting rows in $db failed"; exit 1; }}
  if [ -n "$counts" ]; then
    printf '%s\\n' "$counts" | sed "s/^/rows $db./"
    tables=$((tables + $(printf '%s\\n' "$counts" | wc -l)))
    rows=$((rows + $(printf '%s\\n' "$counts" | awk -F'|' '{{s += $2}} END {{print s + 0}}')))
  fi
done
amcheck=skipped
if [ -x "/usr/lib/postgresql/$version/bin/pg_amcheck" ]; then
  runuser -u postgres -- "/usr/lib/postgresql/$version/bin/pg_amcheck" -h "$sock" -p "$port" \\
    --all --install-missing --heapallindexed
  rc=$?
  case $rc in
    0) amcheck=ok ;;
    2) echo "pg_amcheck found corruption"; exit 1 ;;
    *) echo "pg_amcheck failed (exit $rc)"; exit 1 ;;
  esac
fi
echo "pgmam-note tables=$tables"
echo "pgmam-note rows=$rows"
echo "pgmam-note amcheck=$amcheck"
mkdir -p {RESULTS_DIR}
printf '%s ok %s %s %s %s %s\\n' "$(date +%s)" "$backup" "$tables" "$rows" "$amcheck" "$target" >> "{RESULTS_DIR}/$app"
"""

# A drill that a crash interrupted proved nothing either way: it is not recorded as failed.
RECORD_FAILURE = f"""if [ -z "${{PGMAM_RECOVERING:-}}" ]; then
  mkdir -p {RESULTS_DIR}
  printf '%s failed %s - - - %s\\n' "$(date +%s)" "$2" "$3" >> "{RESULTS_DIR}/$1"
fi
"""


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
        backup = restore.choose_backup(host, cluster, stanza.backups, to)
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
            sh(restore.RESTORE_STAGING, app, paths.drill, backup, paths.run, port, conf, *target_args),
            long=True,
            undo=sh(RECORD_FAILURE + 'rm -rf -- "$4"\n', app, backup, target, paths.drill),
            undo_if_failed=True,
        ),
        Step(
            f"start a throwaway local-only instance on it (port {port}, no TCP, archiving off)",
            sh(restore.START_STAGING, v, paths.drill, paths.run, LONG_STEP_DEADLINE_S),
            long=True,
            undo=sh(restore.STOP_INSTANCE, v, paths.drill, "immediate"),
        ),
        Step(
            "replay and prove it (stopped at the target, out of recovery)",
            sh(restore.PROVE_RECOVERY, paths.run, port, f"{paths.run}/staging.log", 0, paths.drill),
            long=True,
        ),
        Step(
            "examine it: every database connects, pg_amcheck (heap + btree), row counts per table",
            sh(DRILL, paths.run, port, v, app, backup, target),
            long=True,
        ),
        Step("stop the throwaway instance", sh(restore.STOP_INSTANCE, v, paths.drill, "fast")),
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
