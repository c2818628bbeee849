"""watchdog, notify, check: the servers watch themselves; the operator's side of it.

`inv watchdog` puts the inventory's [notify] and [watchdog] on a server and runs its watchdog
from a timer (pgmam_remote/watchdog.py runs there); `inv notify --test` has the server send a
test message; `inv check` is a Nagios/Icinga plugin over `inv status`'s checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import configs, server_code
from ..console import Console
from ..errors import Refusal
from ..facts import ServerFacts, gather
from ..health import HostStatus
from ..inventory import Host, Inventory
from ..plan import Plan, Step, execute
from ..remote import PasswordSource, ask_password
from ..runner import Confirmation, OnHost, Report
from ..watchdog import CONFIG, Config, RepoRef, masked

RUN = "watchdog.sh"


def config_for(inventory: Inventory, host: Host) -> Config:
    """What the host's watchdog needs: the inventory's [notify] and [watchdog], and its repos."""
    watch = inventory.watch
    return Config(
        server=host.name,
        webhook=watch.webhook,
        email=watch.email,
        every_seconds=watch.every_seconds,
        remind_seconds=watch.remind_seconds,
        grace_seconds=watch.grace_seconds,
        full_within_seconds=watch.full_within_seconds,
        metrics_dir=watch.metrics_dir,
        repos=tuple(RepoRef(r.name, r.host, r.where, r.address) for r in inventory.repos_of(host)),
    )


def every(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def channels_in_words(config: Config) -> str:
    found = [f"{name} {masked(target)}" for name, target in config.channels().items()]
    return ", ".join(found) if found else "no channel ([notify] is empty: it only writes its log and metrics)"


def plan_watchdog(host: str, facts: ServerFacts, config: Config, *, remove: bool) -> Plan:
    """Pure: put the config and the timer in place and run it once; or take them away."""
    if remove:
        return Plan(
            host,
            "remove the watchdog",
            (
                Step(
                    "stop the watchdog; remove its timer, config, state and metrics",
                    server_code.step("disable-watchdog", config.metrics_dir),
                ),
            ),
        )
    if not facts.tools.get("python3", False):
        raise Refusal(f"{host}: python3 is not installed; the watchdog runs with it", hint="apt-get install python3")
    label = "the watchdog's config (its webhook URL is a secret)"
    return Plan(
        host,
        f"watchdog every {every(config.every_seconds)}",
        (
            Step(f"write {CONFIG}", configs.write_secret(str(CONFIG), config.json(), "root:root", "0600", label)),
            Step(
                f"run the watchdog every {every(config.every_seconds)}"
                + (" (systemd timer)" if facts.systemd else " (cron)"),
                server_code.step("enable-watchdog", config.every_seconds),
            ),
            Step("run it once now", server_code.script(RUN, "run", timeout=300)),
        ),
    )


class Watchdog(OnHost):
    """`inv watchdog`: one server's watchdog set up (or updated, or removed)."""

    def __init__(
        self, inventory: Inventory, host: Host, *, remove: bool = False, password_source: PasswordSource = ask_password
    ) -> None:
        super().__init__(host, password_source)
        self.config = config_for(inventory, host)
        self.remove = remove

    def prepare(self, *, dry_run: bool) -> None:
        facts, _ = gather(self.session, install=not dry_run)
        self.plan = plan_watchdog(self.host.name, facts, self.config, remove=self.remove)

    def render(self) -> list[str]:
        return self.plan.render()

    def confirmations(self) -> list[Confirmation]:
        return []

    def run(self, console: Console) -> Report:
        outcome = execute(self.plan, self.session, console)
        name = self.host.name
        if self.remove:
            return Report([f"{name}: the watchdog is removed (its log stays in /var/log/pgmam/watchdog.log)"])
        config = self.config
        first = outcome.results[-1][1].stdout.splitlines()
        done = f"{name}: the watchdog runs every {every(config.every_seconds)}; alerts: {channels_in_words(config)}"
        report = Report(
            [done],
            lines=[line.split(" ", 1)[-1] for line in first if line.strip()],
        )
        if not any("metrics: /" in line for line in first):
            report.notes.append(
                f"no metrics: {config.metrics_dir} is not on {name} (apt-get install prometheus-node-exporter)"
            )
        report.notes.append(f"reminders every {every(config.remind_seconds)} while an app stays unhealthy")
        report.notes.append(f"send a test message: inv notify --test --host {name}")
        return report


def send_test(host: Host, console: Console, password_source: PasswordSource = ask_password) -> bool:
    """`inv notify --test`: the server sends a test message through each channel it has."""
    with OnHost(host, password_source) as on:
        # this pgmam's watchdog.sh sends it: its code is installed first, as for any job
        facts, _ = gather(on.session, install=True)
        if facts.watchdog is None:
            raise Refusal(
                f"{host.name}: no watchdog is set up there, so nothing to send with",
                hint=f"inv watchdog --host {host.name}",
            )
        result = on.session.run(server_code.script(RUN, "test", timeout=60), check=False)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    for line in lines:
        (console.success if line.endswith(": delivered") else console.warning)(f"{host.name}: {line}")
    if result.exit_status not in (0, 1):
        raise Refusal(f"{host.name}: the test could not run: {(result.stderr or result.stdout).strip()[-300:]}")
    return result.exit_status == 0


# -- inv check: a Nagios/Icinga plugin ---------------------------------------------------------

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
# problems that degrade the safety net without putting data at risk yet
WARNING_STARTS = ("leftover ", "the watchdog", "alerts cannot be delivered")


@dataclass(frozen=True)
class CheckResult:
    code: int
    line: str


def check_result(status: HostStatus, app: str | None = None) -> CheckResult:
    """Pure: a host's status -> the plugin's exit code and its one line, with perfdata."""
    name = status.host
    if not status.reachable or (status.error and not status.clusters):
        return CheckResult(UNKNOWN, f"PGMAM UNKNOWN - {name}: {status.error}")
    clusters = [c for c in status.clusters if c.managed and (app is None or c.app == app)]
    if app is not None and not clusters:
        return CheckResult(UNKNOWN, f"PGMAM UNKNOWN - {name}: no app {app} managed by pgmam there")
    problems = [] if app else [f"{name}: {p}" for p in status.problems]
    problems += [f"{c.app}: {p}" for c in clusters for p in c.problems]
    critical = [p for p in problems if not p.split(": ", 1)[1].startswith(WARNING_STARTS)]
    code = CRITICAL if critical else WARNING if problems else OK
    unhealthy = sorted({c.app for c in clusters if c.problems})
    if problems:
        summary = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}: " + "; ".join((critical or problems)[:3])
        if len(problems) > 3:
            summary += f"; and {len(problems) - 3} more (inv status --host {name})"
    else:
        summary = f"{len(clusters)} app{'s' if len(clusters) != 1 else ''} healthy"
    perf = [f"apps={len(clusters)}", f"unhealthy={len(unhealthy)}"]
    for c in clusters:
        if c.last_backup is not None:
            perf.append(f"{c.app}_backup_age={c.last_backup.age_seconds}s")
        if c.archiving is not None and c.archiving.last_archived_age_seconds is not None:
            perf.append(f"{c.app}_archive_age={c.archiving.last_archived_age_seconds}s")
    return CheckResult(code, f"PGMAM {STATES[code]} - {name}: {summary} | {' '.join(perf)}")
