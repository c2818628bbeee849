"""Input validation at the edge: each check returns the value or raises a one-line Refusal."""

from __future__ import annotations

import re
from datetime import datetime

from .errors import Refusal

APP_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def app_name(app: str) -> str:
    """An app name becomes a cluster name, a stanza, a directory and a unit name."""
    if not APP_RE.fullmatch(app or ""):
        raise Refusal(
            f"app name {app!r} is not allowed",
            hint="use 1-40 characters: a lowercase letter first, then lowercase letters, digits or '_'",
        )
    return app


def port(value: int | str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Refusal(f"port {value!r} is not a number", hint="pick a free port in 1024..65535") from None
    if not 1024 <= number <= 65535:
        raise Refusal(f"port {number} is outside 1024..65535", hint="pick a free port in 1024..65535")
    return number


def pg_version(value: int | str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Refusal(
            f"PostgreSQL version {value!r} is not a major version number", hint="e.g. --pg-version 16"
        ) from None
    if not 9 <= number <= 99:
        raise Refusal(f"PostgreSQL version {number} is not a major version", hint="e.g. --pg-version 16")
    return number


POINT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
TS_HINT = "write it with a zone, e.g. '2026-01-19 10:40:00+00' or '2026-01-19T10:40:00Z'"


def target_time(text: str) -> datetime:
    """An ISO-8601 / PostgreSQL-style time with an explicit zone; anything else is refused."""
    raw = (text or "").strip()
    if raw.upper().endswith(" UTC"):
        raw = raw[:-4] + "+00:00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Refusal(f"target time {text!r} is not a date and time", hint=TS_HINT) from None
    if moment.tzinfo is None:
        raise Refusal(f"target time {text!r} has no time zone, so it is ambiguous", hint=TS_HINT)
    return moment


def restore_point(name: str) -> str:
    if not POINT_RE.fullmatch(name or ""):
        raise Refusal(
            f"restore point name {name!r} is not allowed",
            hint="use up to 63 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def host_name(name: str) -> str:
    """A server's inventory name (also the name of its place in an off-host repo)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name or ""):
        raise Refusal(f"server name {name!r} is not allowed", hint="use the name it has in hosts.toml")
    return name
