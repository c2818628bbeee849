"""The output samples in the docs: run a tour against fresh sandbox servers, keep each command's
output in docs/samples/NAME.txt, and put them into the docs.

A doc shows a sample as a fenced block right after a marker line:

    <!-- sample: NAME -->                  the whole output
    <!-- sample: NAME head=4 tail=3 -->    its first 4 and last 3 lines, with "..." between
    <!-- sample: NAME OTHER -->            one after the other

Usage:
  sudo python3 scripts/samples.py           run the tour (about 3 minutes), write the samples, then the docs
  python3 scripts/samples.py --docs         only put the kept samples into the docs
  python3 scripts/samples.py --check        exit 1 when a doc's block differs from its sample (a unit test runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "docs" / "samples"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- sample: ([a-z0-9-]+(?: [a-z0-9-]+)*)((?: (?:head|tail)=\d+)*) -->$")


# -- the docs ----------------------------------------------------------------------------------


def excerpt(text: str, options: str) -> str:
    """A sample as a doc shows it: whole, or its head and tail lines around a "..." line."""
    wanted = dict(re.findall(r"(head|tail)=(\d+)", options))
    if not wanted:
        return text
    lines = text.splitlines()
    head, tail = int(wanted.get("head", 0)), int(wanted.get("tail", 0))
    if head + tail >= len(lines):
        return text
    return "\n".join([*lines[:head], "...", *(lines[-tail:] if tail else [])]) + "\n"


def render(doc: str, samples: dict[str, str]) -> str:
    """The doc with every marked block replaced by its sample."""
    lines = doc.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        found = MARKER.match(lines[i].rstrip("\n"))
        i += 1
        if not found:
            continue
        names, options = found.groups()
        missing = [name for name in names.split() if name not in samples]
        if missing:
            raise SystemExit(f"no sample named {missing[0]} (docs/samples/{missing[0]}.txt)")
        if i >= len(lines) or not lines[i].startswith("```"):
            raise SystemExit(f"the sample marker of {names} must be followed by a ``` block")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip("\n") == "```"), None)
        if end is None:
            raise SystemExit(f"the block of sample {names} never ends")
        out += [lines[i], excerpt("".join(samples[name] for name in names.split()), options), "```\n"]
        i = end + 1
    return "".join(out)


def kept() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted(SAMPLES.glob("*.txt"))}


def stale_docs() -> list[Path]:
    samples = kept()
    return [doc for doc in DOCS if render(doc.read_text(), samples) != doc.read_text()]


def write_docs() -> None:
    samples = kept()
    for doc in DOCS:
        text = doc.read_text()
        new = render(text, samples)
        if new != text:
            doc.write_text(new)
            print(f"wrote {doc.relative_to(REPO)}")


# -- the tour ------------------------------------------------------------------------------


class Tour:
    """Commands against the sandbox, each one's output (stderr and stdout, as a terminal shows
    them without colors) kept under a name."""

    def __init__(self, box: object, inventory: Path, bridge: str) -> None:
        self.box = box
        self.bridge = bridge  # this machine's address on the sandbox network
        self.env = {**os.environ, "PGMAM_HOSTS": str(inventory)}
        self.samples: dict[str, str] = {}

    def inv(self, name: str | None, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,  # no terminal: as in a script, --yes or a refusal
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if done.returncode not in ok:
            raise SystemExit(f"inv {shlex.join(args)} exited {done.returncode}:\n{done.stdout}")
        if name:
            self.keep(name, args, done.stdout + (f"exit {done.returncode}\n" if done.returncode else ""))
        return done.stdout

    def keep(self, name: str, args: tuple[str, ...], output: str) -> None:
        """The command as typed, then its output (rich pads table lines with spaces: trimmed)."""
        lines = [f"$ inv {shlex.join(args)}", *(line.rstrip() for line in output.splitlines())]
        self.samples[name] = "\n".join(lines) + "\n"

    def keep_text(self, name: str, text: str) -> None:
        """What is not a command's output: a message as a receiver got it, a file on a server."""
        self.samples[name] = text if text.endswith("\n") else text + "\n"

    def on(self, server: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside a sandbox server, as root."""
        import pgmam_sandbox as sandbox

        target = next(s for s in self.box.servers if s.name == server)  # type: ignore[attr-defined]
        return subprocess.run(sandbox.netns_exec_argv(target, list(argv)), capture_output=True, text=True, check=check)

    def sql(self, server: str, port: int, query: str) -> str:
        argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(port), "-c", query]
        return self.on(server, *argv).stdout.strip()

    def now(self, server: str, port: int) -> str:
        """The server's time, as a target with a zone."""
        return self.sql(server, port, "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS') || '+00'")

    def wait_unlocked(self, server: str, app: str) -> None:
        """A restore returns once the app is back; its follow-up backup runs on, holding the app."""
        while self.on(server, "test", "-e", f"/var/lib/pgmam/locks/{app}", check=False).returncode == 0:
            time.sleep(0.2)


def tour(t: Tour) -> None:
    t.inv("list", "--list")
    t.inv("help-initcluster", "-h", "initcluster")
    t.inv("initcluster-dry-run", "initcluster", "--host", "sbx2", "--app", "newapp", "--port", "5440", "--dry-run")
    t.inv("initcluster", "initcluster", "--host", "sbx1", "--app", "shop", "--port", "5433")
    t.inv("initcluster-again", "initcluster", "--host", "sbx1", "--app", "shop", "--port", "5433")
    t.inv(None, "initcluster", "--host", "sbx1", "--app", "blog", "--port", "5434")
    t.inv(None, "initcluster", "--host", "sbx2", "--app", "notes", "--port", "5437")
    refused = (1, 2)
    init = ("initcluster", "--host", "sbx1")
    t.inv("refuse-app-name", *init, "--app", "My-App", "--port", "5440", ok=refused)
    t.inv("refuse-port-taken", *init, "--app", "newapp", "--port", "5433", ok=refused)
    t.inv("refuse-port-80", *init, "--app", "newapp", "--port", "80", ok=refused)
    t.inv("refuse-app-exists", *init, "--app", "shop", "--port", "5435", ok=refused)
    t.inv("refuse-pg16", *init, "--app", "newapp", "--port", "5440", "--pg-version", "16", ok=refused)
    t.inv("refuse-missing-port", *init, "--app", "newapp", ok=refused)
    t.sql("sbx1", 5433, "create table orders (id int primary key, item text)")
    t.sql("sbx1", 5433, "insert into orders select g, 'item ' || g from generate_series(1, 100) g")
    shop = ("--host", "sbx1", "--app", "shop")
    t.inv("backup", "backup", *shop)
    t.inv("backup-all", "backup", "--host", "sbx1", "--all-apps", "--type", "full")
    t.inv("refuse-backup-type", "backup", *shop, "--type", "weekly", ok=refused)
    t.inv("refuse-backup-no-app", "backup", "--host", "sbx1", ok=refused)
    t.inv("refuse-backup-both", "backup", *shop, "--all-apps", ok=refused)
    t.inv("refuse-backup-nosuch", "backup", "--host", "sbx1", "--app", "nosuch", ok=refused)
    t.inv("schedule", "schedule", *shop, "--verify", "Sun 05:00")
    blog = ("--host", "sbx1", "--app", "blog")
    t.inv("schedule-blog", "schedule", *blog, "--full", "Sun 02:00", "--diff", "Mon..Sat 02:00", "--incr", "hourly")
    t.inv("refuse-calendar-words", "schedule", *shop, "--full", "every night", ok=refused)
    t.inv("refuse-calendar-dash", "schedule", *shop, "--full", "Mon-Fri 02:00", ok=refused)
    t.inv("refuse-remove-with", "schedule", *shop, "--remove", "--incr", "hourly", ok=refused)
    t.inv("verify", "verify", *shop)
    time.sleep(1)
    noted = t.now("sbx1", 5433)
    time.sleep(1)
    # a commit after the noted time, archived: a replay knows it has passed it
    t.sql("sbx1", 5433, "insert into orders values (101, 'after the noted time')")
    t.sql("sbx1", 5433, "select pg_switch_wal()")
    time.sleep(3)
    t.inv("verify-to", "verify", *shop, "--to", noted)
    t.inv("refuse-verify-future", "verify", *shop, "--to", "2030-01-01 00:00:00+00", ok=refused)
    t.inv("verify-dry-run", "verify", *shop, "--dry-run")
    t.inv("restore-point", "restore-point", *shop, "--name", "before-migration")
    t.sql("sbx1", 5433, "delete from orders")
    t.inv("pitr-dry-run", "pitr", *shop, "--to", noted, "--dry-run")
    t.inv("refuse-no-zone", "pitr", *shop, "--to", "2026-01-19 10:40:00", ok=refused)
    t.inv("refuse-future", "pitr", *shop, "--to", "2030-01-19 10:40:00+00", ok=refused)
    t.inv("refuse-before", "pitr", *shop, "--to", "2026-01-19 10:40:00+00", ok=refused)
    t.inv("refuse-no-terminal", "pitr", *shop, "--to-point", "before-migration", ok=refused)
    t.inv("pitr", "pitr", *shop, "--to-point", "before-migration", "--yes")
    t.wait_unlocked("sbx1", "shop")
    t.inv("rollback", "rollback", *shop, "--yes")
    t.wait_unlocked("sbx1", "shop")
    t.inv("backups", "backups", *shop)  # the pitr's backup: an abandoned timeline
    # copies and removal, on sbx2: crm has 5000 contacts
    t.inv(None, "initcluster", "--host", "sbx2", "--app", "crm", "--port", "5435")
    contacts = "select g as id, 'contact ' || g as name from generate_series(1, 5000) g"
    t.sql("sbx2", 5435, f"create table contacts as {contacts}")
    t.inv("branch", "branch", "--host", "sbx2", "--app", "crm", "--name", "staging", "--yes")
    t.wait_unlocked("sbx2", "crm_staging")
    t.inv("branch-sync", "branch", "--host", "sbx2", "--app", "crm", "--name", "staging", "--sync", "--yes")
    t.wait_unlocked("sbx2", "crm_staging")
    t.inv("dropcluster-branches", "dropcluster", "--host", "sbx2", "--app", "crm", "--yes", ok=refused)
    t.inv("dropcluster-no-terminal", "dropcluster", "--host", "sbx2", "--app", "crm_staging", ok=refused)
    t.inv("dropcluster", "dropcluster", "--host", "sbx2", "--app", "crm_staging", "--yes")
    t.inv("dropcluster-purge", "dropcluster", "--host", "sbx2", "--app", "crm", "--purge-backups", "--yes")
    t.inv("status", "status", "--all-hosts", ok=(0, 1))
    watch(t)


def archiving(t: Tour, broken: bool) -> None:
    """shop's WAL archiving broken (an archive_command that fails), or mended; then a watchdog run."""
    setting = "alter system set archive_command = '/bin/false'" if broken else "alter system reset archive_command"
    t.sql("sbx1", 5433, setting)
    t.sql("sbx1", 5433, "select pg_reload_conf()")
    t.sql("sbx1", 5433, "insert into orders values (1000 + (random() * 1000)::int, 'x') on conflict do nothing")
    t.sql("sbx1", 5433, "select pg_switch_wal()")
    failing = "select coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) from pg_stat_archiver"
    while t.sql("sbx1", 5433, failing) != ("t" if broken else "f"):
        time.sleep(0.5)
    t.on("sbx1", "systemctl", "start", "pgmam-watchdog.service")


def watch(t: Tour) -> None:
    """The watchdog on sbx1, sending to a receiver on the sandbox network (docs/monitoring.md)."""
    from pgmam_sandbox.receiver import Receiver

    receiver = Receiver(t.bridge, "/hooks/T000/B000/XXXXXXXX")
    inventory = Path(t.env["PGMAM_HOSTS"])
    watched = inventory.with_name("hosts-watch.toml")
    watched.write_text(inventory.read_text() + f'\n[notify]\nwebhook = "{receiver.url}"\n')
    t.env["PGMAM_HOSTS"] = str(watched)
    t.on("sbx1", "mkdir", "-p", "/var/lib/prometheus/node-exporter")  # as node_exporter's package makes it
    t.inv("watchdog-dry-run", "watchdog", "--host", "sbx1", "--dry-run")
    t.inv("watchdog", "watchdog", "--host", "sbx1")
    t.inv("notify-test", "notify", "--test", "--host", "sbx1")
    archiving(t, broken=True)
    alert = {k: v for k, v in receiver.wait("unhealthy").items() if k not in ("path", "arrived")}  # the receiver's
    t.keep_text("watchdog-alert", json.dumps(alert, indent=2))
    metrics = t.on("sbx1", "cat", "/var/lib/prometheus/node-exporter/pgmam.prom").stdout
    t.keep_text("watchdog-metrics", "\n".join(line for line in metrics.splitlines() if not line.startswith("#")))
    t.inv("check-critical", "check", "--host", "sbx1", ok=(2,))
    archiving(t, broken=False)
    t.keep_text("watchdog-recovered", receiver.wait("recovered")["text"])
    t.inv("check-ok", "check", "--host", "sbx1", "--app", "shop")
    receiver.close()


def run_tour() -> None:
    sys.path.insert(0, str(REPO))
    import pgmam_sandbox as sandbox

    naming = sandbox.SandboxNaming(
        netns_prefix="pgmam-ds",
        link_prefix="pgmds",
        subnet="10.213.9.0/24",
        login_user="pgmamds",
        sudo_password_user="pgmamdspw",
    )
    state = sandbox.state_dir_for(".sandbox-samples")
    box = sandbox.up(2, state, naming=naming)
    try:
        t = Tour(box, box.inventory, str(naming.bridge_address))
        tour(t)
    finally:
        sandbox.down(state, naming=naming)
    SAMPLES.mkdir(parents=True, exist_ok=True)
    for name, text in t.samples.items():
        (SAMPLES / f"{name}.txt").write_text(text)
    print(f"wrote {len(t.samples)} samples in {SAMPLES.relative_to(REPO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", action="store_true", help="only put the kept samples into the docs")
    parser.add_argument("--check", action="store_true", help="exit 1 when a doc differs from its samples")
    args = parser.parse_args()
    if args.check:
        stale = stale_docs()
        for doc in stale:
            print(f"{doc.relative_to(REPO)}: a sample block differs from docs/samples: run scripts/samples.py --docs")
        raise SystemExit(1 if stale else 0)
    if not args.docs:
        run_tour()
    write_docs()


if __name__ == "__main__":
    main()
