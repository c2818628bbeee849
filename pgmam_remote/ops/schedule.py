"""schedule: scheduled backups per app, as systemd timers (systemd is PID 1) or /etc/cron.d entries.

A schedule is a small calendar language that both can express (parsed and rendered here,
purely): 'hourly', 'daily', 'weekly', 'monthly', or '[DAYS ]HH:MM' where DAYS is a day name,
a range ('Mon..Fri') or a list ('Sat,Sun'). Every scheduled run goes through one script on the
server that records its result where `inv status` reads it, so a failing scheduled backup turns
status red.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import configs
from ..errors import Refusal
from ..facts import ServerFacts
from ..plan import Plan, Step
from ..remote import Command, sh
from . import restore

BIN_DIR = "/var/lib/pgmam/bin"
RUNNER = f"{BIN_DIR}/scheduled-backup"
SNAPSHOT_BIN = f"{BIN_DIR}/snapshot"
RESULTS_DIR = "/var/lib/pgmam/scheduled"
DEFAULTS = {"full": "Sun 03:00", "diff": "Mon..Sat 03:00"}
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CALENDAR_HINT = "use 'hourly', 'daily', 'weekly', 'monthly', 'HH:MM', 'Sun 03:00', 'Mon..Fri 02:30' or 'Sat,Sun 04:00'"

# Runs one backup (as postgres), snapshots the config, records "<epoch> <rc> <type> <label>".
RUNNER_SCRIPT = f"""#!/bin/sh
{configs.MARKER}
# Runs one scheduled backup of an app and records the result for `inv status`:
# "<start epoch> <exit status> <type> <label> <seconds>" (75: skipped, a pitr/rollback/verify held the app).
# cron's PATH has no sbin (runuser lives there)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
app=$1; version=$2; type=$3
mkdir -p {RESULTS_DIR} /var/log/pgmam
# one scheduled backup of an app at a time: a second one waits instead of failing on pgBackRest's lock
exec 9> "{RESULTS_DIR}/$app.lock"
flock 9
started=$(date +%s)
run_log=$(mktemp)
lock=/var/lib/pgmam/locks/$app
holder=$(cat "$lock/pid" 2> /dev/null)
if [ -n "$holder" ] && [ -d "/proc/$holder" ]; then
  echo "skipped: $(tr '\\n' ' ' < "$lock/info")" > "$run_log"
  rc=75
else
  {{
    cd /tmp && runuser -u postgres -- pgbackrest --stanza="$app" --type="$type" backup \\
      && sh {SNAPSHOT_BIN} "$app" "$version"
  }} > "$run_log" 2>&1
  rc=$?
fi
label=$(sed -n 's/^pgmam-note backup=//p' "$run_log" | tail -n 1)
[ "$rc" = 0 ] || label=-
{{ echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $type backup of $app: exit $rc"; cat "$run_log"; }} \\
  >> "/var/log/pgmam/scheduled-$app.log"
rm -f "$run_log"
printf '%s %s %s %s %s\\n' "$started" "$rc" "$type" "${{label:--}}" "$(( $(date +%s) - started ))" \\
  >> "{RESULTS_DIR}/$app"
exit $rc
"""


@dataclass(frozen=True)
class Calendar:
    """A time of day on some days of the week (None = every day); minute-only means hourly."""

    text: str
    minute: int
    hour: int | None  # None: every hour
    days: tuple[int, ...] | None  # 0 = Monday; None: every day
    monthday: int | None = None

    def systemd(self) -> str:
        days = ",".join(DAYS[d] for d in self.days) + " " if self.days else ""
        day = f"*-*-{self.monthday:02d}" if self.monthday else "*-*-*"
        hour = "*" if self.hour is None else f"{self.hour:02d}"
        return f"{days}{day} {hour}:{self.minute:02d}:00"

    def cron(self) -> str:
        days = ",".join(str((d + 1) % 7) for d in self.days) if self.days else "*"
        hour = "*" if self.hour is None else str(self.hour)
        return f"{self.minute} {hour} {self.monthday or '*'} * {days}"

    def next_after(self, moment: datetime) -> datetime:
        """The next run strictly after ``moment`` (same time zone as the server's clock)."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(60 * 24 * 32):
            if (
                candidate.minute == self.minute
                and (self.hour is None or candidate.hour == self.hour)
                and (self.days is None or candidate.weekday() in self.days)
                and (self.monthday is None or candidate.day == self.monthday)
            ):
                return candidate
            candidate += timedelta(minutes=1)
        raise ValueError("no run within a month")


def next_run(calendar: Calendar, facts: ServerFacts) -> datetime:
    """The next run in UTC: cron and systemd read calendars in the server's local time."""
    offset = timedelta(minutes=facts.utc_offset_minutes)
    return calendar.next_after(facts.now + offset) - offset


def parse_calendar(text: str) -> Calendar:
    """Pure: the calendar language above -> Calendar, or a Refusal with the forms that work."""
    raw = " ".join((text or "").split())
    keywords = {
        "hourly": Calendar(raw, 0, None, None),
        "daily": Calendar(raw, 0, 0, None),
        "weekly": Calendar(raw, 0, 0, (0,)),
        "monthly": Calendar(raw, 0, 0, None, 1),
    }
    if raw.lower() in keywords:
        return keywords[raw.lower()]
    found = re.fullmatch(r"(?:(?P<days>[A-Za-z.,]+) )?(?P<h>\d{1,2}):(?P<m>\d{2})", raw)
    if not found or int(found["h"]) > 23 or int(found["m"]) > 59:
        raise Refusal(f"schedule {text!r} is not understood", hint=CALENDAR_HINT)
    days = _days(found["days"], text) if found["days"] else None
    return Calendar(raw, int(found["m"]), int(found["h"]), days)


def _days(spec: str, text: str) -> tuple[int, ...]:
    names = {d.lower(): i for i, d in enumerate(DAYS)}
    chosen: set[int] = set()
    for part in spec.split(","):
        first, sep, last = part.partition("..")
        if first.lower() not in names or (sep and last.lower() not in names):
            raise Refusal(f"schedule {text!r}: {part!r} is not a day or a day range", hint=CALENDAR_HINT)
        a, b = names[first.lower()], names[(last or first).lower()]
        chosen.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(chosen))


# -- the plan (pure) ------------------------------------------------------------------------


def cron_path(app: str) -> str:
    return f"/etc/cron.d/pgmam-{app}"


def unit_name(app: str, kind: str) -> str:
    return f"pgmam-backup-{app}-{kind}"


def plan_schedule(host: str, facts: ServerFacts, app: str, calendars: dict[str, Calendar], remove: bool) -> Plan:
    cluster = restore.managed_cluster(host, facts, app)
    v = cluster.version
    steps: list[Step] = []
    if facts.systemd:
        units = [unit_name(app, kind) for kind in ("full", "diff", "incr")]
        remove_units = sh(
            'for u in "$@"; do systemctl disable --now "$u.timer" 2> /dev/null || true; '
            'rm -f "/etc/systemd/system/$u.timer" "/etc/systemd/system/$u.service"; done; systemctl daemon-reload',
            *units,
        )
        steps.append(Step(f"remove {app}'s backup timers", remove_units))
        if not remove:
            steps.append(_install_runner())
            for kind, cal in calendars.items():
                name = unit_name(app, kind)
                service = (
                    f"{configs.MARKER}\n[Unit]\nDescription=pgmam {kind} backup of {app}\n\n[Service]\nType=oneshot\n"
                    f"ExecStart=/bin/sh {RUNNER} {app} {v} {kind}\n"
                )
                timer = (
                    f"{configs.MARKER}\n# pgmam-schedule app={app} type={kind} calendar={cal.text.replace(' ', '_')}\n"
                    f"[Unit]\nDescription=pgmam {kind} backup of {app}: {cal.text}\n\n"
                    f"[Timer]\nOnCalendar={cal.systemd()}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
                )
                steps.append(
                    Step(f"write {name}.service", configs.write_file(f"/etc/systemd/system/{name}.service", service))
                )
                steps.append(
                    Step(
                        f"write {name}.timer ({cal.text})",
                        configs.write_file(f"/etc/systemd/system/{name}.timer", timer),
                    )
                )
            timers = [f"{unit_name(app, kind)}.timer" for kind in calendars]
            steps.append(
                Step("enable the timers", sh('systemctl daemon-reload && systemctl enable --now "$@"', *timers))
            )
    else:
        if not facts.tools.get("cron", False) and not remove:
            raise Refusal(
                f"{host}: systemd is not PID 1 and cron is not installed, so nothing would run the schedule",
                hint="apt-get install cron",
            )
        if remove:
            steps.append(Step(f"remove {cron_path(app)}", Command.of("rm", "-f", "--", cron_path(app))))
        else:
            steps.append(_install_runner())
            lines = [
                configs.MARKER,
                f"# Scheduled backups of {app}; run by cron, results in {RESULTS_DIR}/{app}.",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ]
            for kind, cal in calendars.items():
                lines.append(f"# pgmam-schedule app={app} type={kind} calendar={cal.text.replace(' ', '_')}")
                lines.append(f"{cal.cron()} root /bin/sh {RUNNER} {app} {v} {kind}")
            steps.append(Step(f"write {cron_path(app)}", configs.write_file(cron_path(app), "\n".join(lines) + "\n")))
    title = f"remove the backup schedule of {app}" if remove else f"schedule backups of {app}"
    return Plan(host=host, title=title, steps=tuple(steps))


def _install_runner() -> Step:
    install = sh(
        'set -e; mkdir -p "$1"; printf "%s" "$2" > "$1/scheduled-backup.tmp"; printf "%s" "$3" > "$1/snapshot.tmp"; '
        'chmod 0755 "$1/scheduled-backup.tmp" "$1/snapshot.tmp"; '
        'mv -f "$1/scheduled-backup.tmp" "$1/scheduled-backup"; mv -f "$1/snapshot.tmp" "$1/snapshot"',
        BIN_DIR,
        RUNNER_SCRIPT,
        configs.SNAPSHOT,
    )
    return Step(f"install the scheduled-backup runner in {BIN_DIR}", install)
