"""Input validation at the edge: each check returns the value or raises a one-line Refusal."""

from __future__ import annotations

import re

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
