"""watchdog: each server's own look at its apps, every few minutes, from a systemd timer (cron
where there is no systemd).

It runs on the server, as root, from pgmam's installed code (``server/watchdog.sh``), with the
server's own python3 and nothing else: this module and the ones it imports use the standard
library alone. One run:

1. probes the server (``server/probe.sh``, as `inv status` does) and judges it with
   :func:`health.assess`: the same checks, the same words;
2. tells each channel of ``[notify]`` (a webhook, an address through sendmail) when an app, or
   the server itself, turns unhealthy (or gets a new problem), when it recovers, and again every
   ``remind`` while it stays unhealthy; never once per run. Each channel keeps its own state, so a receiver that is down
   gets what it missed once it answers again, and the others are not told twice;
3. writes the metrics for node_exporter's textfile collector (metrics.py);
4. records itself in ``last.json``, which the probe reports: `inv status` shows a watchdog that
   stopped running or cannot deliver.

``/etc/pgmam/watchdog.json`` (root only: a webhook URL is a secret) is written by `inv watchdog`
from the inventory. The URL never appears in output or logs: :func:`masked` stands for it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from . import health, metrics
from .facts import CLUSTER_SQL, ServerFacts, parse_probe

CONFIG = Path("/etc/pgmam/watchdog.json")
STATE_DIR = Path("/var/lib/pgmam/watchdog")
LOG = Path("/var/log/pgmam/watchdog.log")
CODE = Path(__file__).resolve().parents[2]  # <code dir>/py/pgmam_remote/watchdog.py
METRICS_DIR = "/var/lib/prometheus/node-exporter"  # Debian's prometheus-node-exporter reads it
EVERY_SECONDS = 300
REMIND_SECONDS = 4 * 3600
SEND_TIMEOUT_SECONDS = 10
SSH_PORT = 22  # where a repository host takes pgBackRest's SSH
REPO_TIMEOUT_SECONDS = 5
SENDMAIL = "/usr/sbin/sendmail"
SERVER = ""  # the subject of the server's own problems (its disk, pgBackRest); apps are named
UTC = timezone.utc  # noqa: UP017 -- servers may run Python 3.10, which has no datetime.UTC


@dataclass(frozen=True)
class RepoRef:
    """An off-host repo as the watchdog knows it (health reads name, host and where)."""

    name: str
    host: str = ""
    where: str = ""
    address: str = ""  # a repository host's, where the server reaches it over SSH ("" for S3)
    s3: None = None


@dataclass(frozen=True)
class Here:
    """This server, as health names it."""

    name: str
    address: str = "localhost"


@dataclass(frozen=True)
class Config:
    """What `inv watchdog` puts on a server: where to send, and how often to look and remind."""

    server: str
    webhook: str | None = None
    email: str | None = None
    every_seconds: int = EVERY_SECONDS
    remind_seconds: int = REMIND_SECONDS
    grace_seconds: int = int(health.SCHEDULE_GRACE.total_seconds())
    full_within_seconds: int = int(health.DISK_FULL_WITHIN.total_seconds())
    metrics_dir: str = METRICS_DIR
    repos: tuple[RepoRef, ...] = ()

    def channels(self) -> dict[str, str]:
        """channel name -> its target (the webhook URL, the address)."""
        found = {"webhook": self.webhook, "email": self.email}
        return {name: target for name, target in found.items() if target}

    def json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, text: str) -> Config:
        raw = json.loads(text)
        repos = tuple(
            RepoRef(r["name"], r.get("host", ""), r.get("where", ""), r.get("address", ""))
            for r in raw.pop("repos", [])
        )
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known, repos=repos)


def masked(target: str) -> str:
    """How output names a channel's target: a webhook by its scheme and host only (its path and
    query are the secret), an address as it is."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"


# -- what to say (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One message to one channel: an app (or the server) turned unhealthy, is still, or recovered."""

    kind: str  # unhealthy | reminder | recovered | test
    server: str
    app: str  # "" for the server itself
    since: str  # ISO-8601 UTC: when it turned unhealthy
    problems: tuple[str, ...]
    time: str  # ISO-8601 UTC: now

    @property
    def subject(self) -> str:
        return self.app

    @property
    def who(self) -> str:
        return f"{self.server}/{self.app}" if self.app else self.server

    @property
    def more(self) -> str:
        return f"inv status --host {self.server}"

    @property
    def title(self) -> str:
        if self.kind == "test":
            return f"pgmam on {self.server}: a test message"
        if self.kind == "recovered":
            return f"pgmam: {self.who} recovered (unhealthy since {self.since})"
        still = "still " if self.kind == "reminder" else ""
        return f"pgmam: {self.who} is {still}unhealthy since {self.since}"

    def text(self) -> str:
        lines = [self.title]
        if self.kind == "test":
            lines.append(f"The watchdog on {self.server} can reach this channel.")
        elif self.kind == "recovered":
            lines.append("It was: " + "; ".join(self.problems))
        else:
            lines += [f"- {problem}" for problem in self.problems]
        lines.append(f"More: {self.more}")
        return "\n".join(lines)

    def body(self) -> dict[str, object]:
        """The webhook's JSON: pgmam's own fields, plus "text" (chat webhooks show it as it is)."""
        return {
            "text": self.text(),
            "event": self.kind,
            "server": self.server,
            "app": self.app or None,
            "since": self.since,
            "problems": list(self.problems),
            "more": self.more,
            "time": self.time,
        }


def subjects(status: health.HostStatus) -> dict[str, list[str]]:
    """What needs attention, per app (managed ones), and for the server itself under SERVER; each
    problem on one line (a tool's error can run to several)."""
    found = {SERVER: list(status.problems)}
    for cluster in status.clusters:
        if cluster.managed:
            found[cluster.app] = list(cluster.problems)
    return {
        subject: [health.clip(problem.splitlines()[0], 300) for problem in problems]
        for subject, problems in found.items()
        if problems
    }


def kind_of(problem: str) -> str:
    """A problem without its figures and times ('WAL archiving failing at '): what a new problem
    is told apart by, while the words of one that goes on change with its ages."""
    return problem[: next((i for i, c in enumerate(problem) if c.isdigit()), len(problem))]


def decide(
    known: dict[str, dict], now_problems: dict[str, list[str]], now: datetime, remind: timedelta, server: str
) -> list[Message]:
    """Pure: the messages one channel is owed. ``known``: that channel's state (subject ->
    since, problems, notified: when it was last told this subject is unhealthy, or None, and
    told: the kinds of problem it was told of)."""
    stamp = now.isoformat(timespec="seconds")
    messages = []
    for subject in sorted(set(known) | set(now_problems)):
        entry, problems = known.get(subject), now_problems.get(subject, [])
        if problems:
            since = entry["since"] if entry else stamp
            notified = entry and entry.get("notified")
            new = {kind_of(p) for p in problems} - set(entry.get("told", []) if entry else [])
            if not notified or new:  # unhealthy, or a new problem on top
                messages.append(Message("unhealthy", server, subject, since, tuple(problems), stamp))
            elif now - datetime.fromisoformat(notified) >= remind:
                messages.append(Message("reminder", server, subject, since, tuple(problems), stamp))
        elif entry and entry.get("notified"):
            messages.append(Message("recovered", server, subject, entry["since"], tuple(entry["problems"]), stamp))
    return messages


def advance(
    known: dict[str, dict], now_problems: dict[str, list[str]], now: datetime, delivered: list[tuple[Message, bool]]
) -> dict[str, dict]:
    """Pure: one channel's next state. An unhealthy subject keeps its ``since``; a recovery that
    was not delivered keeps the subject, so the next run says it again."""
    stamp = now.isoformat(timespec="seconds")
    state = {
        subject: {**known.get(subject, {"since": stamp, "notified": None}), "problems": problems}
        for subject, problems in now_problems.items()
    }
    for message, ok in delivered:
        if message.kind == "recovered" and not ok:
            state[message.subject] = known[message.subject]
        elif message.kind != "recovered" and ok:
            told = sorted({kind_of(p) for p in message.problems})
            state[message.subject].update(notified=stamp, told=told)
    return state


# -- how to say it ---------------------------------------------------------------------------


def post_webhook(url: str, message: Message, timeout: float = SEND_TIMEOUT_SECONDS) -> str | None:
    """POST the message's JSON; None when the receiver answered 2xx, else why not (no URL in it)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(message.body()).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "pgmam-watchdog"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read(4096)
        return None
    except urllib.error.HTTPError as exc:
        return f"answered HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"cannot be reached: {exc.reason}"
    except TimeoutError:
        return f"did not answer within {timeout:.0f} s"
    except OSError as exc:
        return f"cannot be reached: {exc.strerror or exc}"


def send_mail(address: str, message: Message, timeout: float = SEND_TIMEOUT_SECONDS) -> str | None:
    """Hand the message to the server's sendmail (postfix, exim, msmtp-mta...); None when it took it."""
    if not Path(SENDMAIL).exists():
        return f"no {SENDMAIL} on this server (install a mail transfer agent, such as postfix)"
    mail = EmailMessage()
    mail["To"] = address
    mail["Subject"] = message.title
    mail.set_content(message.text() + "\n")
    try:
        done = subprocess.run(
            [SENDMAIL, "-t", "-oi"], input=mail.as_bytes(), capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return f"sendmail did not finish within {timeout:.0f} s"
    if done.returncode != 0:
        return f"sendmail failed (exit {done.returncode}): {done.stderr.decode(errors='replace').strip()[:200]}"
    return None


SENDERS: dict[str, Callable[[str, Message], str | None]] = {"webhook": post_webhook, "email": send_mail}


# -- one run ---------------------------------------------------------------------------------


def probe() -> ServerFacts:
    """The facts, read here as `inv status` reads them over SSH."""
    done = subprocess.run(
        ["sh", str(CODE / "probe.sh"), CLUSTER_SQL, "", (CODE / "wal-gaps.awk").read_text()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )
    return parse_probe(done.stdout)


@dataclass
class Run:
    """One run's record, kept in last.json (the probe reports it)."""

    time: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    every_seconds: int = EVERY_SECONDS
    unhealthy: list[str] = field(default_factory=list)
    # channel -> {"target": masked, "ok": bool, "error": str|None, "time"}: what this run sent (a
    # channel that is owed a message is tried on every run, so a failure shows until it is over)
    channels: dict[str, dict] = field(default_factory=dict)
    metrics: str | None = None  # the file written, or None
    disks: dict[str, dict] = field(default_factory=dict)  # mount -> health.forecast()
    error: str | None = None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def log(line: str, *, echo: bool = True) -> None:
    """A line in the watchdog's log (and on stdout, which the journal keeps)."""
    stamped = f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}"
    if echo:
        print(stamped, flush=True)
    try:
        LOG.parent.mkdir(parents=True, exist_ok=True)
        with LOG.open("a") as out:
            out.write(stamped + "\n")
    except OSError:
        pass


def notify(config: Config, status: health.HostStatus, now: datetime, run: Run) -> None:
    """Each channel: what it is owed, sent; its state advanced by what arrived."""
    state_path = STATE_DIR / "state.json"
    state = _read_json(state_path)
    problems = subjects(status)
    for channel, target in config.channels().items():
        known = state.get(channel, {})
        sent = []
        for message in decide(known, problems, now, timedelta(seconds=config.remind_seconds), config.server):
            error = SENDERS[channel](target, message)
            sent.append((message, error is None))
            outcome = "delivered" if error is None else f"NOT delivered: {masked(target)} {error}"
            log(f"{channel} {message.who} {message.kind}: {outcome}")
            run.channels[channel] = {"target": masked(target), "ok": error is None, "error": error, "time": run.time}
        state[channel] = advance(known, problems, now, sent)
    state = {channel: state[channel] for channel in config.channels()}
    _write(state_path, json.dumps(state, indent=1, sort_keys=True), 0o600)


def run_once(config: Config) -> Run:
    started, cpu = time.monotonic(), time.process_time()
    now = datetime.now(UTC)
    run = Run(time=now.isoformat(timespec="seconds"), every_seconds=config.every_seconds)
    try:
        facts = probe()
        views = repo_views(config)
        run.disks = track_disks(facts)
        limits = health.Limits(timedelta(seconds=config.grace_seconds), timedelta(seconds=config.full_within_seconds))
        here = Here(config.server)
        status = health.assess(here, facts, repos=views, watchdog=False, limits=limits, forecasts=run.disks)  # type: ignore[arg-type]
        run.unhealthy = sorted(subject or "(server)" for subject in subjects(status))
        notify(config, status, now, run)
        run.metrics = write_metrics(config, status, facts, run)
        apps = sum(1 for cluster in status.clusters if cluster.managed)
        unhealthy = ", ".join(run.unhealthy) or "none"
        log(f"checked {apps} app{'s' if apps != 1 else ''}: unhealthy: {unhealthy}; metrics: {run.metrics or 'none'}")
    except Exception as exc:  # the record says why; the next run tries again
        run.error = f"{type(exc).__name__}: {exc}"
        log(f"run failed: {run.error}")
    run.seconds = round(time.monotonic() - started, 3)
    run.cpu_seconds = round(time.process_time() - cpu + _children_cpu(), 3)
    _write(STATE_DIR / "last.json", json.dumps(asdict(run), indent=1, sort_keys=True))
    return run


def repo_views(config: Config) -> tuple[health.RepoView, ...]:
    """Each off-host repo as the server sees it: its backups are the repository host's to report
    (`inv status` reads them from there), but whether that host answers is seen from here."""
    views = []
    for repo in config.repos:
        error = None
        if repo.address:
            try:
                with socket.create_connection((repo.address, SSH_PORT), timeout=REPO_TIMEOUT_SECONDS):
                    pass
            except OSError as exc:
                why = exc.strerror or str(exc) or type(exc).__name__
                error = f"no SSH answer at {repo.address}:{SSH_PORT} from {config.server} ({why})"
        views.append(health.RepoView(repo, None, error))  # type: ignore[arg-type]
    return tuple(views)


def track_disks(facts: ServerFacts) -> dict[str, dict]:
    """Each filesystem's free space, sampled once per run and kept for health.FORECAST_SPAN: the
    forecast of when it is full (health.forecast) needs a rate, and a single look has none."""
    path = STATE_DIR / "disks.json"
    kept = _read_json(path)
    now = facts.now.timestamp()
    since = now - health.FORECAST_SPAN.total_seconds()
    samples = {
        disk.mount: [s for s in kept.get(disk.mount, []) if since <= s[0] < now] + [[now, disk.free_bytes]]
        for disk in facts.disks
    }
    _write(path, json.dumps(samples))
    found = {mount: health.forecast([(t, f) for t, f in series]) for mount, series in samples.items()}
    return {mount: result for mount, result in found.items() if result}


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def write_metrics(config: Config, status: health.HostStatus, facts: ServerFacts, run: Run) -> str | None:
    """node_exporter's textfile collector reads ``*.prom`` in its directory; none there, none written."""
    directory = Path(config.metrics_dir)
    if not directory.is_dir():
        return None
    path = directory / "pgmam.prom"
    _write(path, metrics.render(status, facts, run.time, config.every_seconds))
    return str(path)


def test_message(config: Config) -> int:
    """Send a test message through every channel; say what arrived. Exit 0 when all did."""
    channels = config.channels()
    if not channels:
        print("no channel: add [notify] webhook or email to the inventory, then run inv watchdog")
        return 2
    now = datetime.now(UTC).isoformat(timespec="seconds")
    message = Message("test", config.server, "", now, (), now)
    failed = 0
    for channel, target in channels.items():
        error = SENDERS[channel](target, message)
        failed += error is not None
        outcome = "delivered" if error is None else f"NOT delivered: {error}"
        print(f"{channel} {masked(target)}: {outcome}")
        log(f"{channel} test: {outcome}", echo=False)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="watchdog.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "test"))
    parser.add_argument("--config", type=Path, default=CONFIG)
    args = parser.parse_args(argv)
    try:
        config = Config.parse(args.config.read_text())
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"pgmam watchdog: cannot read {args.config}: {exc}", file=sys.stderr)
        return 3
    if args.action == "test":
        return test_message(config)
    run = run_once(config)
    return 1 if run.error else 0


if __name__ == "__main__":
    sys.exit(main())
