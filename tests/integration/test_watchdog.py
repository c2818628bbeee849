"""The watchdog on a systemd server, over real SSH: alerts to a webhook receiver on the sandbox
network, `inv notify --test`, an unreachable receiver, an overdue backup, its metrics scraped
from a real node_exporter, and a repository host switched off.

Each test starts the watchdog's service by hand (`systemctl start pgmam-watchdog.service`, which
returns when the run is over) instead of waiting for its timer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import pgmam_sandbox as sandbox
from pgmam_sandbox.receiver import Receiver

SERVERS = 2  # sbx2: the repository host of the last test
APP, PORT = "wd", 5610
SECRET = "T0KEN-S3CRET"
NODE_EXPORTER = Path("/var/cache/pgmam-sandbox/node_exporter")  # `make deps` extracts it from Debian's package
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"


@pytest.fixture(scope="module")
def receiver(box) -> Iterator[Receiver]:
    found = Receiver(str(box.naming.bridge_address), f"/hook/{SECRET}")
    yield found
    found.close()


@pytest.fixture(scope="module")
def watched(box, inv, receiver, tmp_path_factory) -> Path:
    """APP on sbx1, its watchdog sending to the receiver (every minute; 1 min of grace)."""
    assert inv("initcluster", "--host", "sbx1", "--app", APP, "--port", str(PORT)).returncode == 0
    inventory = tmp_path_factory.mktemp("watch") / "hosts.toml"
    inventory.write_text(
        box.inventory.read_text()
        + f'\n[notify]\nwebhook = "{receiver.url}"\n\n[watchdog]\nevery = "1min"\ngrace = "1min"\n'
    )
    done = inv("watchdog", "--host", "sbx1", inventory=inventory)
    assert done.returncode == 0, done.stderr
    assert "the watchdog runs every 1 min" in done.stderr and SECRET not in done.stdout + done.stderr
    timers = box.on("sbx1", "systemctl", "is-enabled", "pgmam-watchdog.timer").stdout
    assert timers.strip() == "enabled"
    return inventory


def watch_once(box) -> None:
    box.on("sbx1", "systemctl", "start", "pgmam-watchdog.service")


def archiving(box, *, broken: bool) -> None:
    """Break WAL archiving (an archive_command that fails) or mend it; wait until the archiver
    has failed, or has archived again."""
    setting = "alter system set archive_command = '/bin/false'" if broken else "alter system reset archive_command"
    box.psql("sbx1", PORT, setting)
    box.psql("sbx1", PORT, "select pg_reload_conf()")
    box.psql("sbx1", PORT, "create table if not exists t(x int); insert into t values (1)")
    box.psql("sbx1", PORT, "select pg_switch_wal()")
    deadline = time.monotonic() + 60
    failing = "coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false)"
    while box.psql("sbx1", PORT, f"select {failing} from pg_stat_archiver") != ("t" if broken else "f"):
        assert time.monotonic() < deadline, "the archiver never changed state"
        time.sleep(0.5)


def status_of(inv, inventory: Path) -> dict:
    done = inv("status", "--host", "sbx1", "--json", inventory=inventory)
    return json.loads(done.stdout)["hosts"][0]


def test_archiving_breaks_one_alert_then_fixed_one_recovery(box, inv, watched, receiver):
    receiver.bodies.clear()
    archiving(box, broken=True)
    watch_once(box)
    watch_once(box)
    assert receiver.events(APP) == [("unhealthy", APP)]
    alert = receiver.bodies[0]
    assert alert["server"] == "sbx1" and alert["more"] == "inv status --host sbx1"
    assert any(p.startswith("WAL archiving failing at ") for p in alert["problems"])
    assert alert["path"] == f"/hook/{SECRET}"
    # one implementation: the alert says what `inv status` says
    app = next(c for c in status_of(inv, watched)["clusters"] if c["app"] == APP)
    assert alert["problems"] == app["problems"]
    check = inv("check", "--host", "sbx1", inventory=watched)
    assert check.returncode == 2, check.stdout + check.stderr
    assert check.stdout.startswith(f"PGMAM CRITICAL - sbx1: 1 problem: {APP}: WAL archiving failing at ")
    assert " | apps=1 unhealthy=1 " in check.stdout

    archiving(box, broken=False)
    watch_once(box)
    watch_once(box)
    assert receiver.events(APP) == [("unhealthy", APP), ("recovered", APP)]
    assert receiver.bodies[-1]["since"] == alert["since"]
    check = inv("check", "--host", "sbx1", "--app", APP, inventory=watched)
    assert (check.returncode, check.stdout.split(" | ")[0]) == (0, "PGMAM OK - sbx1: 1 app healthy")
    log = box.on("sbx1", "cat", "/var/log/pgmam/watchdog.log").stdout
    assert f"webhook sbx1/{APP} recovered: delivered" in log and SECRET not in log
    journal = box.on("sbx1", "journalctl", "-u", "pgmam-watchdog.service", "--no-pager").stdout
    assert SECRET not in journal


def test_notify_test_reaches_the_receiver(inv, watched, receiver):
    receiver.bodies.clear()
    done = inv("notify", "--test", "--host", "sbx1", inventory=watched)
    assert done.returncode == 0, done.stderr
    assert receiver.events(None) == [("test", None)]
    assert "delivered" in done.stderr and SECRET not in done.stderr


def test_check_cannot_reach_a_server_and_says_unknown(inv, watched, tmp_path):
    down = tmp_path / "hosts.toml"
    down.write_text(watched.read_text().replace("[hosts.sbx1]", "[hosts.sbx1]\nport = 1", 1))
    check = inv("check", "--host", "sbx1", inventory=down)
    assert check.returncode == 3 and check.stdout.startswith("PGMAM UNKNOWN - sbx1: ")
    usage = inv("check", "--host", "nosuch", inventory=watched)
    assert usage.returncode == 3 and usage.stdout.startswith("PGMAM UNKNOWN - unknown host 'nosuch'")


def test_email_goes_through_the_servers_sendmail(box, inv, watched, receiver, tmp_path):
    """A stand-in sendmail (the image has none) keeps what it is given, as a mail transfer agent would."""
    assert box.on("sbx1", "test", "-e", "/usr/sbin/sendmail", check=False).returncode == 1
    fake = 'printf "%s\\n" "$*" > /tmp/pgmam-test-mail.args; cat > /tmp/pgmam-test-mail'
    box.on(
        "sbx1", "sh", "-c", f"printf '#!/bin/sh\\n%s\\n' '{fake}' > /usr/sbin/sendmail; chmod 755 /usr/sbin/sendmail"
    )
    both = tmp_path / "hosts.toml"
    both.write_text(watched.read_text().replace("[notify]\n", '[notify]\nemail = "ops@example.com"\n'))
    try:
        assert inv("watchdog", "--host", "sbx1", inventory=both).returncode == 0
        done = inv("notify", "--test", "--host", "sbx1", inventory=both)
        assert done.returncode == 0, done.stderr
        assert "email ops@example.com: delivered" in done.stderr
        assert box.on("sbx1", "cat", "/tmp/pgmam-test-mail.args").stdout.strip() == "-t -oi"
        mail = box.on("sbx1", "cat", "/tmp/pgmam-test-mail").stdout
        assert "To: ops@example.com" in mail and "Subject: pgmam on sbx1: a test message" in mail
        assert "More: inv status --host sbx1" in mail
        box.on("sbx1", "rm", "-f", "/usr/sbin/sendmail")
        missing = inv("notify", "--test", "--host", "sbx1", inventory=both)
        assert (
            missing.returncode == 1 and "email ops@example.com: NOT delivered: no /usr/sbin/sendmail" in missing.stderr
        )
    finally:
        box.on("sbx1", "rm", "-f", "/usr/sbin/sendmail", "/tmp/pgmam-test-mail", "/tmp/pgmam-test-mail.args")
        assert inv("watchdog", "--host", "sbx1", inventory=watched).returncode == 0


def test_an_unreachable_receiver_is_a_clear_line_and_the_checks_go_on(box, inv, watched, receiver):
    receiver.bodies.clear()
    receiver.code = 500
    try:
        archiving(box, broken=True)
        watch_once(box)  # the service succeeds: the run went on; the channel failed
        host = status_of(inv, watched)
        undelivered = [p for p in host["problems"] if p.startswith("alerts cannot be delivered")]
        assert len(undelivered) == 1 and "answered HTTP 500" in undelivered[0] and SECRET not in undelivered[0]
        app = next(c for c in host["clusters"] if c["app"] == APP)
        assert any(p.startswith("WAL archiving failing") for p in app["problems"])
        log = box.on("sbx1", "cat", "/var/log/pgmam/watchdog.log").stdout
        assert f"webhook sbx1/{APP} unhealthy: NOT delivered" in log and SECRET not in log
        record = json.loads(box.on("sbx1", "cat", "/var/lib/pgmam/watchdog/last.json").stdout)
        assert record["error"] is None and record["unhealthy"] == [APP]
        refused = inv("notify", "--test", "--host", "sbx1", inventory=watched)
        assert refused.returncode == 1 and "NOT delivered: answered HTTP 500" in refused.stderr

        receiver.code = 200  # back: the alert it missed arrives, once
        watch_once(box)
        watch_once(box)
        assert receiver.events(APP) == [("unhealthy", APP), ("unhealthy", APP)]  # the 500 one, then the retry
        host = status_of(inv, watched)
        assert not [p for p in host["problems"] if p.startswith("alerts cannot")]
    finally:
        receiver.code = 200
        archiving(box, broken=False)
        watch_once(box)
    assert receiver.events(APP)[-1] == ("recovered", APP)


def test_an_overdue_scheduled_backup_triggers_an_alert(box, inv, watched, receiver):
    receiver.bodies.clear()
    due = box.on("sbx1", "date", "-d", "+2 min", "+%H:%M").stdout.strip()
    done = inv("schedule", "--host", "sbx1", "--app", APP, "--full", due, inventory=watched)
    assert done.returncode == 0, done.stderr
    try:
        # the failure: a timer that never fires
        box.on("sbx1", "systemctl", "stop", f"pgmam-schedule-{APP}-full.timer")
        due_epoch = int(box.on("sbx1", "date", "-d", due, "+%s").stdout)
        while int(box.on("sbx1", "date", "+%s").stdout) < due_epoch + 62:  # due, plus 1 min of grace
            time.sleep(2)
        watch_once(box)
        assert receiver.events(APP) == [("unhealthy", APP)]
        (problem,) = receiver.bodies[0]["problems"]
        assert problem.startswith("scheduled full backup due at ") and problem.endswith(
            f"has not run (see systemctl list-timers 'pgmam-schedule-{APP}-*', or /etc/cron.d/pgmam-{APP})"
        )
    finally:
        assert inv("schedule", "--host", "sbx1", "--app", APP, "--remove", inventory=watched).returncode == 0
    watch_once(box)
    assert receiver.events(APP)[-1] == ("recovered", APP)


@contextlib.contextmanager
def node_exporter(box) -> Iterator[str]:
    """Debian's node_exporter, run inside sbx1 with only its textfile collector; yields its URL."""
    server = box.server("sbx1")
    binary = "/usr/local/bin/pgmam-test-node-exporter"
    subprocess.run(
        sandbox.netns_exec_argv(server, ["sh", "-c", f"cat > {binary} && chmod 755 {binary}"]),
        input=NODE_EXPORTER.read_bytes(),
        check=True,
    )
    address = f"{server.address}:9100"
    argv = [
        binary,
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={TEXTFILE_DIR}",
        f"--web.listen-address={address}",
    ]
    process = subprocess.Popen(sandbox.netns_exec_argv(server, argv), start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        yield f"http://{address}/metrics"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        box.on("sbx1", "rm", "-f", binary)


def scrape(url: str) -> dict[str, float]:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                text = answer.read().decode()
            break
        except OSError:
            assert time.monotonic() < deadline, f"node_exporter never answered at {url}"
            time.sleep(0.3)
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("pgmam_")
    }


@pytest.mark.skipif(not NODE_EXPORTER.exists(), reason=f"no {NODE_EXPORTER} (make deps extracts it)")
def test_node_exporter_serves_the_metrics_and_they_match_status(box, inv, watched):
    box.on("sbx1", "mkdir", "-p", TEXTFILE_DIR)
    try:
        watch_once(box)
        with node_exporter(box) as url:
            scraped = scrape(url)
        app = next(c for c in status_of(inv, watched)["clusters"] if c["app"] == APP)
        label = f'{{app="{APP}"}}'
        assert scraped[f"pgmam_cluster_up{label}"] == 1
        assert scraped[f"pgmam_app_healthy{label}"] == (1 if app["healthy"] else 0)
        assert scraped[f"pgmam_archive_failed_total{label}"] == app["archiving"]["failed_count"]
        last = app["last_backup"]
        stop = scraped[f'pgmam_last_backup_timestamp_seconds{{app="{APP}",repo="local",type="{last["type"]}"}}']
        assert stop == pytest.approx(datetime.fromisoformat(last["stop"]).timestamp(), abs=1)
        window = app["recovery_window"]
        start = scraped[f'pgmam_recovery_window_start_timestamp_seconds{{app="{APP}",repo="local"}}']
        assert start == pytest.approx(datetime.fromisoformat(window["start"]).timestamp(), abs=1)
        assert scraped["pgmam_watchdog_interval_seconds"] == 60
    finally:
        box.on("sbx1", "rm", "-rf", TEXTFILE_DIR)


def test_a_repository_host_switched_off_is_an_alert_and_back_a_recovery(box, inv, receiver, tmp_path_factory):
    home = tmp_path_factory.mktemp("vault")
    inventory = home / "hosts.toml"
    text = box.inventory.read_text().replace("[hosts.sbx1]\n", '[hosts.sbx1]\nrepos = ["vault"]\n', 1)
    inventory.write_text(
        text + f'\n[repos.vault]\ntype = "host"\nhost = "sbx2"\n\n[notify]\nwebhook = "{receiver.url}"\n'
    )
    env = {"PGMAM_CONFIG_DIR": str(home / "config")}
    for app, port in ((APP, PORT), ("wdr", PORT + 1)):  # every app of sbx1 kept in the repo
        done = inv("initcluster", "--host", "sbx1", "--app", app, "--port", str(port), inventory=inventory, env=env)
        assert done.returncode == 0, done.stderr
    assert inv("watchdog", "--host", "sbx1", inventory=inventory, env=env).returncode == 0
    receiver.bodies.clear()
    watch_once(box)
    assert receiver.bodies == []
    link = box.naming.host_veth(2)
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        watch_once(box)
        assert sorted(receiver.events(app) for app in (APP, "wdr")) == [[("unhealthy", APP)], [("unhealthy", "wdr")]]
        (problem,) = next(b for b in receiver.bodies if b["app"] == "wdr")["problems"]
        address = box.server("sbx2").address
        assert problem == f"repo vault (sbx2) unreachable: no SSH answer at {address}:22 from sbx1 (timed out)"
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    watch_once(box)
    assert [b["event"] for b in receiver.bodies].count("recovered") == 2
