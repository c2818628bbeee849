"""What only a server with systemd as PID 1 has, tested on systemd-booted sandbox servers.

Clusters run as ``postgresql@`` units, pgmam's server jobs as ``systemd-run`` units, schedules as
timers that really fire, and after a reboot or a power cut systemd starts the clusters again with
nobody running pgmam. Each server is its own machine: its own machine-id and host key.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

import pgmam_sandbox as sandbox
from pgmam_remote import server_code

PG = "/var/lib/postgresql/15"
JOBS = "/var/lib/pgmam/jobs"
ROWS = "select count(*) from t"
NOW_UTC = "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.5)


def make_app(box, inv, server: str, app: str, port: int, rows: int) -> None:
    out = inv("initcluster", "--host", server, "--app", app, "--port", str(port))
    assert out.returncode == 0, out.stdout + out.stderr
    box.psql(server, port, f"create table t (id int primary key); insert into t select generate_series(1, {rows})")


def unit_state(box, server: str, unit: str) -> str:
    return box.on(server, "systemctl", "is-active", unit, check=False).stdout.strip()


def postmaster_cgroup(box, server: str, app: str) -> str:
    pid = box.on(server, "head", "-n", "1", f"{PG}/{app}/postmaster.pid").stdout.strip()
    return box.on(server, "cat", f"/proc/{pid}/cgroup").stdout.strip()


def backup_labels(box, server: str, app: str) -> list[str]:
    argv = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={app}", "--output=json", "info"]
    info = json.loads(box.on(server, "sh", "-c", 'cd /tmp && exec "$@"', "sh", *argv).stdout)[0]
    return [b["label"] for b in info["backup"]]


def test_servers_boot_systemd_each_a_machine_of_its_own(box):
    for server in ("sbx1", "sbx2"):
        assert box.on(server, "cat", "/proc/1/comm").stdout.strip() == "systemd"
        state = box.on(server, "systemctl", "is-system-running", check=False).stdout.strip()
        failed = box.on(server, "systemctl", "--failed", "--no-legend", check=False).stdout
        assert state == "running", failed
        assert box.on(server, "hostname").stdout.strip() == server
    assert len({box.on(s, "cat", "/etc/machine-id").stdout for s in ("sbx1", "sbx2")}) == 2
    assert len({box.on(s, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for s in ("sbx1", "sbx2")}) == 2
    # no cluster comes with the image: every cluster's system identifier is its own
    assert box.clusters("sbx1") == [] and box.clusters("sbx2") == []


def test_clusters_are_postgresql_units_and_jobs_are_systemd_run_units(box, inv):
    app, port = "sd_units", 5701
    make_app(box, inv, "sbx1", app, port, rows=10)
    assert unit_state(box, "sbx1", f"postgresql@15-{app}") == "active"
    assert f"postgresql@15-{app}.service" in postmaster_cgroup(box, "sbx1", app)

    out = inv("backup", "--host", "sbx1", "--app", app)
    assert out.returncode == 0, out.stdout + out.stderr
    job = box.on("sbx1", "sh", "-c", f"ls -1t {JOBS} | grep '^backup-{app}-' | head -n 1").stdout.strip()
    assert job, "the backup left no job dir"
    journal = box.on("sbx1", "journalctl", "--no-pager", "-o", "cat", "-u", f"pgmam-{job}.service").stdout
    assert f"Started pgmam-{job}.service" in journal, journal
    assert "Deactivated successfully" in journal, journal
    # the job outlives the SSH session because systemd runs it, not the login's process tree
    assert unit_state(box, "sbx1", f"pgmam-{job}.service") in ("inactive", "unknown")


def test_a_scheduled_timer_fires_and_takes_a_backup(box, inv):
    app, port = "sd_timer", 5702
    make_app(box, inv, "sbx2", app, port, rows=10)
    before = backup_labels(box, "sbx2", app)
    # the next whole minute of the server's clock, with time to spare to write the timer
    now = datetime.fromisoformat(box.on("sbx2", "date", "+%Y-%m-%dT%H:%M:%S").stdout.strip())
    at = (now + timedelta(seconds=75 if now.second > 40 else 60)).replace(second=0)
    out = inv("schedule", "--host", "sbx2", "--app", app, "--incr", at.strftime("%H:%M"))
    assert out.returncode == 0, out.stdout + out.stderr
    timer = f"pgmam-schedule-{app}-incr.timer"
    assert unit_state(box, "sbx2", timer) == "active"
    assert box.on("sbx2", "test", "-e", f"/etc/cron.d/pgmam-{app}", check=False).returncode == 1  # timers, not cron

    wait_until(lambda: len(backup_labels(box, "sbx2", app)) > len(before), 150, "the timer's backup")
    new = [label for label in backup_labels(box, "sbx2", app) if label not in before]
    assert new and new[0].endswith("I"), new
    service = timer.replace(".timer", ".service")
    wait_until(lambda: unit_state(box, "sbx2", service) == "inactive", 60, "the scheduled run to finish")
    result = box.on("sbx2", "systemctl", "show", "-p", "Result", "--value", service).stdout.strip()
    assert result == "success"
    _, cluster = status_of(inv, "sbx2", app)
    assert not cluster["problems"], cluster["problems"]


def test_clusters_start_by_themselves_after_a_reboot_and_a_power_cut(box, inv):
    app, port = "sd_boot", 5703
    make_app(box, inv, "sbx1", app, port, rows=300)
    other = box.clusters("sbx2")

    for n, power_cut in enumerate((False, True), 1):
        box.psql("sbx1", port, f"insert into t values ({1000 + n})")  # committed, never checkpointed
        box.on("sbx1", "touch", "/tmp/pgmam-test-marker", "/run/pgmam-test-marker")
        sandbox.reboot(box.server("sbx1"), power_cut=power_cut)
        wait_until(lambda: f"15 {app} {port} online" in box.clusters("sbx1"), 60, "the cluster online")
        assert unit_state(box, "sbx1", f"postgresql@15-{app}") == "active"
        assert box.psql("sbx1", port, ROWS) == str(300 + n)  # every committed row is there
        for marker in ("/tmp/pgmam-test-marker", "/run/pgmam-test-marker"):
            assert box.on("sbx1", "test", "-e", marker, check=False).returncode == 1, f"{marker} survived the boot"
    assert box.clusters("sbx2") == other  # the other server never noticed
    code, cluster = status_of(inv, "sbx1", app)
    assert code == 0 and not cluster["problems"], cluster["problems"]


def status_of(inv, server: str, app: str) -> tuple[int, dict]:
    out = inv("status", "--host", server, "--json")
    clusters = json.loads(out.stdout)["hosts"][0]["clusters"]
    return out.returncode, next(c for c in clusters if c["app"] == app)


def test_restores_do_not_depend_on_the_servers_language_or_logging(box, inv):
    """PostgreSQL speaking German into its own logging collector's files: pitr and verify still
    prove recovery (with SQL and the timeline history, not log lines), and the downtime is real."""
    app, port = "sd_de", 5704
    make_app(box, inv, "sbx2", app, port, rows=100)
    conf = f"/etc/postgresql/15/{app}/conf.d/lang.conf"
    settings = "lc_messages = 'de_DE.UTF-8'\nlogging_collector = on\n"
    box.on("sbx2", "sh", "-c", 'printf "$2" > "$1" && chown postgres:postgres "$1"', "sh", conf, settings)
    box.on("sbx2", "pg_ctlcluster", "15", app, "restart")
    psql = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(port), "-c", "select 1/0"]
    assert "FEHLER:  Division durch Null" in box.on("sbx2", *psql, check=False).stderr  # it really speaks German

    target = box.psql("sbx2", port, NOW_UTC)
    box.psql("sbx2", port, "insert into t select generate_series(101, 150)")
    out = inv("pitr", "--host", "sbx2", "--app", app, "--to", target, "--yes", timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert box.psql("sbx2", port, ROWS) == "100"
    # it returned once the app was back; the audit line comes when its job ends (after its backup)
    unlocked = ["test", "!", "-e", f"/var/lib/pgmam/locks/{app}"]
    wait_until(lambda: box.on("sbx2", *unlocked, check=False).returncode == 0, 120, "the pitr's job to end")
    audit = box.on("sbx2", "grep", f"op=pitr app={app} ", "/var/log/pgmam/audit.log").stdout.splitlines()[-1]
    measured = re.search(r" downtime=([0-9.]+)s ", audit)
    assert measured and 0 < float(measured.group(1)) < 30, audit

    out = inv("verify", "--host", "sbx2", "--app", app, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_status_says_when_a_server_runs_older_pgmam_server_code_and_the_next_job_updates_it(box, inv):
    app, port = "sd_code", 5705
    make_app(box, inv, "sbx1", app, port, rows=1)
    assert inv("backup", "--host", "sbx1", "--app", app).returncode == 0  # a job installs the server code

    def code_state() -> str:
        return json.loads(inv("status", "--host", "sbx1", "--json").stdout)["hosts"][0]["server_code"]

    assert code_state() == "current"
    # the job ran pgmam's installed scripts, from the dir named by their hash
    runner = box.on("sbx1", "sh", "-c", f"grep -h job-runner.sh /var/lib/pgmam/jobs/backup-{app}-*/job.sh").stdout
    assert f"/var/lib/pgmam/code/{server_code.VERSION}/job-runner.sh" in runner
    manifest = box.on("sbx1", "cat", f"/var/lib/pgmam/code/{server_code.VERSION}/MANIFEST").stdout
    assert manifest == server_code.MANIFEST
    # a laptop with an older pgmam ran last: current names its version
    older = "mkdir -p /var/lib/pgmam/code/0000000000000000 && ln -sfn code/0000000000000000 /var/lib/pgmam/current"
    box.on("sbx1", "sh", "-c", older)
    assert code_state() == "older"
    table = inv("status", "--host", "sbx1")
    assert "older pgmam server code" in table.stdout
    assert inv("backup", "--host", "sbx1", "--app", app).returncode == 0
    assert code_state() == "current"
    # an unchanged install is left alone: no reload of systemd for every job
    reloads = box.on("sbx1", "sh", "-c", "journalctl --no-pager -o cat _PID=1 | grep -c Reloading || true").stdout
    assert inv("backup", "--host", "sbx1", "--app", app).returncode == 0
    again = box.on("sbx1", "sh", "-c", "journalctl --no-pager -o cat _PID=1 | grep -c Reloading || true").stdout
    assert again == reloads
