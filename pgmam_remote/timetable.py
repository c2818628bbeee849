"""When scheduled work runs: the calendar language of `inv schedule` and the kinds of scheduled work.

A schedule is a small calendar language that both systemd timers and cron can express:
'hourly', 'daily', 'weekly', 'monthly', or '[DAYS ]HH:MM' where DAYS is a day name, a range
('Mon..Fri') or a list ('Sat,Sun'). Pure, and standard library only: the watchdog imports it on
servers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .errors import Refusal

if TYPE_CHECKING:
    from .facts import ServerFacts

KINDS = ("full", "diff", "incr", "verify")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CALENDAR_HINT = "use 'hourly', 'daily', 'weekly', 'monthly', 'HH:MM', 'Sun 03:00', 'Mon..Fri 02:30' or 'Sat,Sun 04:00'"


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

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest run at or before ``moment`` (same time zone as the server's clock)."""
        for back in range(32):
            day = moment - timedelta(days=back)
            if (self.days is not None and day.weekday() not in self.days) or (
                self.monthday is not None and day.day != self.monthday
            ):
                continue
            for hour in range(23, -1, -1) if self.hour is None else (self.hour,):
                candidate = day.replace(hour=hour, minute=self.minute, second=0, microsecond=0)
                if candidate <= moment:
                    return candidate
        raise ValueError("no run within a month")


def next_run(calendar: Calendar, facts: ServerFacts) -> datetime:
    """The next run in UTC: cron and systemd read calendars in the server's local time."""
    offset = timedelta(minutes=facts.utc_offset_minutes)
    return calendar.next_after(facts.now + offset) - offset


def last_run(calendar: Calendar, facts: ServerFacts) -> datetime:
    """The run due last, in UTC (see next_run)."""
    offset = timedelta(minutes=facts.utc_offset_minutes)
    return calendar.last_at_or_before(facts.now + offset) - offset


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


def split_kind(kind: str) -> tuple[str | None, str]:
    """'vault-full' -> ('vault', 'full'); 'full' -> (None, 'full')."""
    if kind in KINDS:
        return None, kind
    repo, _, backup_type = kind.rpartition("-")
    return repo, backup_type


def what(kind: str, many: bool = False) -> str:
    """'full backup', 'full backups into repo vault', 'restore drill from repo vault': a scheduled
    kind in messages and status."""
    s = "s" if many else ""
    repo, what_kind = split_kind(kind)
    if what_kind == "verify":
        return f"restore drill{s} from repo {repo}" if repo else f"restore drill{s}"
    return f"{what_kind} backup{s} into repo {repo}" if repo else f"{what_kind} backup{s}"
