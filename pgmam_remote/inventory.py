"""hosts.toml -> typed Host objects, with groups and defaults.

The inventory is found at ``$PGMAM_HOSTS`` or ``./hosts.toml``. Anything it
does not understand is refused with the file name, the line where we can find
one, and what is wrong: a typo in an inventory must never silently point a
command at the wrong server.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import passphrases
from .errors import InventoryError, UsageError
from .health import Limits

ENV_VAR = "PGMAM_HOSTS"
DEFAULT_PATH = Path("hosts.toml")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

# key -> (accepted types, human description)
_HOST_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "user": ((str,), "a string"),
    "port": ((int,), "an integer 1..65535"),
    "identity_file": ((str,), "a path"),
    "ssh_config": ((str,), 'a path, or "" for none'),
    "known_hosts": ((str,), "a path"),
    "pg_version": ((int,), "an integer such as 15"),
    "connect_timeout": ((int, float), "a number of seconds"),
}
_HOST_ONLY_KEYS: dict[str, tuple[tuple[type, ...], str]] = {"address": ((str,), "a host name or IP")}
# [defaults] and [hosts.X] may name the off-host repositories its apps back up to.
_REPOS_KEY: dict[str, tuple[tuple[type, ...], str]] = {"repos": ((list,), "a list of repo names")}
_REPO_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "type": ((str,), '"host" or "s3"'),
    "host": ((str,), "the name of a host in this inventory"),
    "address": ((str,), "the address the servers reach the repo host at"),
}
_S3_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "type": ((str,), '"s3"'),
    "endpoint": ((str,), "a host name, such as s3.eu-central-003.example.com"),
    "port": ((int,), "an integer 1..65535"),
    "bucket": ((str,), "a bucket name"),
    "region": ((str,), "a region name"),
    "path": ((str,), 'a prefix inside the bucket, such as "/pgmam"'),
    "key_id_env": ((str,), "the name of the environment variable holding the access key id"),
    "secret_env": ((str,), "the name of the environment variable holding the secret key"),
    "ca_file": ((str,), "a path to a PEM file of the CA that signed the endpoint's certificate"),
    "verify_tls": ((bool,), "true or false"),
    "uri_style": ((str,), '"host" or "path"'),
}
# [notify]: where each server's watchdog sends its alerts; [watchdog]: how it runs (docs/monitoring.md)
_NOTIFY_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "webhook": ((str,), "an http:// or https:// URL that takes a JSON POST"),
    "email": ((str,), "an e-mail address"),
}
_WATCHDOG_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "every": ((str,), 'a duration such as "5min"'),
    "remind": ((str,), 'a duration such as "4h"'),
    "grace": ((str,), 'a duration such as "1h"'),
    "full_within": ((str,), 'a duration such as "24h"'),
    "metrics_dir": ((str,), "an absolute path on the servers"),
}
DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
REPO_TYPES = ("host", "s3")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Host:
    """One server as the inventory describes it, defaults applied."""

    name: str
    address: str
    user: str | None = None
    port: int | None = None
    identity_file: Path | None = None
    ssh_config: Path | None = None
    known_hosts: Path = DEFAULT_KNOWN_HOSTS
    pg_version: int | None = None
    connect_timeout: float = 10.0
    repos: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How the host is named in output: the inventory name, plus the address if different."""
        return self.name if self.address == self.name else f"{self.name} ({self.address})"


@dataclass(frozen=True)
class S3:
    """Where an S3 repo lives. The credentials are named, never kept: they come from the
    environment of the operator's machine when the repo is used (:meth:`Repo.credentials`)."""

    endpoint: str
    bucket: str
    key_id_env: str
    secret_env: str
    region: str = "us-east-1"
    port: int = 443
    path: str = "/pgmam"
    ca_file: Path | None = None
    verify_tls: bool = True
    uri_style: str = "host"


@dataclass(frozen=True)
class Repo:
    """An off-host pgBackRest repository: a repository host (one of the inventory's servers), or
    S3-compatible object storage.

    ``address`` is where the other servers reach a repository host (by default the host's own
    inventory address); both are "" for S3. ``line`` is where the inventory defines the repo."""

    name: str
    type: str
    host: str = ""
    address: str = ""
    s3: S3 | None = None
    source: str = ""  # "hosts.toml:12", for refusals that point at the definition

    @property
    def where(self) -> str:
        """How output names the repo's place: its repository host, or its bucket."""
        return f"s3://{self.s3.bucket}" if self.s3 else self.host

    def credentials(self) -> tuple[str, str]:
        """An S3 repo's (access key id, secret key) from the environment; refused when missing."""
        assert self.s3 is not None
        missing = [var for var in (self.s3.key_id_env, self.s3.secret_env) if not os.environ.get(var)]
        if missing:
            raise InventoryError(
                f"{self.source}: repo {self.name!r} needs its credentials in the environment: "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
                hint=f"export {missing[0]}=... (the key from your S3 provider) and run again",
            )
        return os.environ[self.s3.key_id_env], os.environ[self.s3.secret_env]


@dataclass(frozen=True)
class Watch:
    """[notify] and [watchdog]: where the servers' watchdogs send alerts, and how often they look."""

    webhook: str | None = None
    email: str | None = None
    every_seconds: int = 300
    remind_seconds: int = 4 * 3600
    grace_seconds: int = 3600  # how late scheduled work may run before it is overdue
    full_within_seconds: int = 86400  # a disk that will be full this soon needs attention
    metrics_dir: str = "/var/lib/prometheus/node-exporter"
    source: str = ""  # "hosts.toml:40", where [notify] is (or the file)

    def limits(self) -> Limits:
        return Limits(timedelta(seconds=self.grace_seconds), timedelta(seconds=self.full_within_seconds))


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: dict[str, Host]
    groups: dict[str, tuple[str, ...]]
    repos: dict[str, Repo] = field(default_factory=dict)
    watch: Watch = field(default_factory=Watch)

    def repos_of(self, host: Host) -> list[Repo]:
        """The off-host repos the apps of this host back up to, in the order the inventory names them."""
        return [self.repos[name] for name in host.repos]

    def repo(self, name: str) -> Repo:
        if name not in self.repos:
            raise UsageError(
                f"unknown repo {name!r} (not in {self.path})", hint=f"known repos: {', '.join(self.repos) or 'none'}"
            )
        return self.repos[name]

    def select(
        self, names: list[str] | tuple[str, ...] = (), group: str | None = None, all_hosts: bool = False
    ) -> list[Host]:
        """Hosts named by --host, --group and --all-hosts, in inventory order, no duplicates."""
        if not names and not group and not all_hosts:
            raise UsageError("no host selected", hint="pass --host NAME, --group NAME or --all-hosts")
        wanted: set[str] = set()
        for name in names:
            if name not in self.hosts:
                raise UsageError(
                    f"unknown host {name!r} (not in {self.path})",
                    hint=f"known hosts: {', '.join(self.hosts) or 'none'}",
                )
            wanted.add(name)
        if group:
            if group not in self.groups:
                raise UsageError(
                    f"unknown group {group!r} (not in {self.path})",
                    hint=f"known groups: {', '.join(self.groups) or 'none'}",
                )
            wanted.update(self.groups[group])
        if all_hosts:
            wanted.update(self.hosts)
        return [host for name, host in self.hosts.items() if name in wanted]

    def host(self, name: str) -> Host:
        return self.select([name])[0]


def inventory_path() -> Path:
    """$PGMAM_HOSTS, else ./hosts.toml, else hosts.toml in pgmam's config dir (~/.config/pgmam/)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_PATH if DEFAULT_PATH.exists() else passphrases.config_dir() / "hosts.toml"


def load(path: Path | None = None) -> Inventory:
    """Read and validate the inventory file."""
    path = path or inventory_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(
            f"inventory {path} not found" + ("" if os.environ.get(ENV_VAR) else f" (nor ./{DEFAULT_PATH})"),
            hint=f"copy hosts.toml from the pgmam checkout there and edit it, or set {ENV_VAR}",
        ) from None
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    return parse(text, path)


def parse(text: str, path: Path = DEFAULT_PATH) -> Inventory:
    """Pure: inventory text -> Inventory, or InventoryError naming file, line and problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
        where = f"{path}:{found.group(1)}" if found else str(path)
        reason = str(exc)[: found.start()].strip() if found else str(exc)
        raise InventoryError(f"{where}: malformed TOML: {reason}") from None
    checker = _Checker(text, path)
    checker.unknown_keys("", data, {"defaults", "hosts", "groups", "repos", "notify", "watchdog"})

    defaults = checker.table("defaults", data.get("defaults", {}))
    checker.fields("defaults", defaults, {**_HOST_KEYS, **_REPOS_KEY})

    hosts_table = checker.table("hosts", data.get("hosts", {}))
    hosts: dict[str, Host] = {}
    for name, raw in hosts_table.items():
        raw = checker.entry("host", name, raw, {**_HOST_KEYS, **_HOST_ONLY_KEYS, **_REPOS_KEY})
        hosts[name] = _make_host(name, {**defaults, **raw}, checker, f"hosts.{name}")
    if not hosts:
        checker.fail("hosts", None, "no hosts defined; add a [hosts.NAME] table")
    repos = _make_repos(checker, checker.table("repos", data.get("repos", {})), hosts)
    for name, host in hosts.items():
        section = f"hosts.{name}" if "repos" in hosts_table[name] else "defaults"
        for repo_name in host.repos:
            if repo_name not in repos:
                checker.fail(
                    section, "repos", f"repos names unknown repo {repo_name!r}; known: {', '.join(repos) or 'none'}"
                )
            repo = repos[repo_name]
            if repo.type == "host" and (name in (repo.host, repo.address) or repo.address == host.address):
                checker.fail(
                    section,
                    "repos",
                    f"host {name} would back up to repo {repo_name!r}, which is {name} itself: "
                    f"that is not off-host; set repos = [] in [hosts.{name}]",
                )

    groups: dict[str, tuple[str, ...]] = {}
    for group, members in checker.table("groups", data.get("groups", {})).items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            checker.fail("groups", group, f"group {group!r} must be a list of host names")
        unknown = [m for m in members if m not in hosts]
        if unknown:
            checker.fail("groups", group, f"group {group!r} names unknown host(s): {', '.join(unknown)}")
        groups[group] = tuple(members)
    watch = _make_watch(checker, data)
    return Inventory(path=path, hosts=hosts, groups=groups, repos=repos, watch=watch)


def _make_watch(checker: _Checker, data: dict[str, Any]) -> Watch:
    notify = checker.table("notify", data.get("notify", {}))
    checker.fields("notify", notify, _NOTIFY_KEYS)
    settings = checker.table("watchdog", data.get("watchdog", {}))
    checker.fields("watchdog", settings, _WATCHDOG_KEYS)
    webhook = notify.get("webhook")
    if webhook is not None:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", webhook):
            checker.fail("notify", "webhook", "webhook must be an http:// or https:// URL with a host and no spaces")
    email = notify.get("email")
    if email is not None and not EMAIL_RE.fullmatch(email):
        checker.fail("notify", "email", f"email {email!r} is not an e-mail address such as ops@example.com")
    every = _duration(checker, "every", settings.get("every", "5min"))
    remind = _duration(checker, "remind", settings.get("remind", "4h"))
    if not 60 <= every <= 86400:
        checker.fail("watchdog", "every", "every must be between 1min and 1d")
    if not every <= remind <= 7 * 86400:
        checker.fail("watchdog", "remind", "remind must be at least every and at most 7d")
    grace = _duration(checker, "grace", settings.get("grace", "1h"))
    if not 60 <= grace <= 7 * 86400:
        checker.fail("watchdog", "grace", "grace must be between 1min and 7d")
    full_within = _duration(checker, "full_within", settings.get("full_within", "24h"))
    if not 3600 <= full_within <= 30 * 86400:
        checker.fail("watchdog", "full_within", "full_within must be between 1h and 30d")
    metrics_dir = settings.get("metrics_dir", Watch.metrics_dir)
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", metrics_dir):
        checker.fail("watchdog", "metrics_dir", "metrics_dir must be an absolute path (letters, digits, '.', '_', '-')")
    source = checker.where("notify", None) if "notify" in data else str(checker.path)
    return Watch(webhook, email, every, remind, grace, full_within, metrics_dir, source)


def _duration(checker: _Checker, key: str, text: str) -> int:
    """'90s', '5min', '4h', '1d' -> seconds."""
    found = re.fullmatch(r"\s*(\d+)\s*([a-z]+)\s*", text)
    if not found or found[2] not in DURATION_UNITS:
        checker.fail("watchdog", key, f'{key} = {text!r} is not a duration such as "90s", "5min", "4h" or "1d"')
    return int(found[1]) * DURATION_UNITS[found[2]]  # type: ignore[index]


def _make_repos(checker: _Checker, table: dict[str, Any], hosts: dict[str, Host]) -> dict[str, Repo]:
    repos: dict[str, Repo] = {}
    for name, raw in table.items():
        section = f"repos.{name}"
        kind = raw.get("type") if isinstance(raw, dict) else None
        raw = checker.entry("repo", name, raw, _S3_KEYS if kind == "s3" else _REPO_KEYS)
        source = checker.where(section, None)
        if kind == "s3":
            repos[name] = Repo(name=name, type=kind, s3=_make_s3(checker, section, raw), source=source)
            continue
        if kind not in REPO_TYPES:
            checker.fail(section, "type" if kind else None, f'[{section}] needs type = "host" or type = "s3"')
        host = raw.get("host")
        if host is None:
            checker.fail(section, None, f'[{section}] needs host = "NAME", one of the hosts in this inventory')
        if host not in hosts:
            checker.fail(section, "host", f"repo {name!r} names unknown host {host!r}; known: {', '.join(hosts)}")
        address = raw.get("address", hosts[host].address)
        repos[name] = Repo(name=name, type=kind, host=host, address=address, source=source)
    return repos


def _make_s3(checker: _Checker, section: str, raw: dict[str, Any]) -> S3:
    for key in ("endpoint", "bucket", "key_id_env", "secret_env"):
        if key not in raw:
            checker.fail(section, None, f'[{section}] needs {key} = "..." ({_S3_KEYS[key][1]})')
    endpoint = raw["endpoint"]
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", endpoint):
        checker.fail(section, "endpoint", f"endpoint {endpoint!r} must be a host name (no scheme, no port, no path)")
    if not BUCKET_RE.fullmatch(raw["bucket"]):
        checker.fail(section, "bucket", f"bucket {raw['bucket']!r} is not a valid bucket name")
    for key in ("key_id_env", "secret_env"):
        if not ENV_NAME_RE.fullmatch(raw[key]):
            checker.fail(section, key, f"{key} must name an environment variable, not hold the key itself")
    port = raw.get("port", 443)
    if not 1 <= port <= 65535:
        checker.fail(section, "port", f"port {port} is not in 1..65535")
    path = raw.get("path", "/pgmam")
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", path):
        checker.fail(section, "path", f'path {path!r} must look like "/pgmam" (letters, digits, ".", "_", "-")')
    if raw.get("uri_style", "host") not in ("host", "path"):
        checker.fail(section, "uri_style", 'uri_style must be "host" or "path"')
    ca_file = None
    if "ca_file" in raw:
        ca_file = (checker.path.parent / Path(raw["ca_file"]).expanduser()).resolve()
        if not ca_file.is_file():
            checker.fail(section, "ca_file", f"ca_file {raw['ca_file']} is not a file")
    return S3(
        endpoint=endpoint,
        bucket=raw["bucket"],
        key_id_env=raw["key_id_env"],
        secret_env=raw["secret_env"],
        region=raw.get("region", "us-east-1"),
        port=port,
        path=path,
        ca_file=ca_file,
        verify_tls=raw.get("verify_tls", True),
        uri_style=raw.get("uri_style", "host"),
    )


def _make_host(name: str, values: dict[str, Any], checker: _Checker, section: str) -> Host:
    port = values.get("port")
    if port is not None and not 1 <= port <= 65535:
        checker.fail(section, "port", f"port {port} is not in 1..65535")
    timeout = float(values.get("connect_timeout", 10))
    if timeout <= 0:
        checker.fail(section, "connect_timeout", "connect_timeout must be > 0")
    ssh_config = values.get("ssh_config", "~/.ssh/config")
    ssh_config_path = Path(ssh_config).expanduser() if ssh_config else None
    if ssh_config_path is not None and "ssh_config" not in values and not ssh_config_path.exists():
        ssh_config_path = None  # the implicit default is optional; an explicit path must exist
    identity = values.get("identity_file")
    repos = values.get("repos", [])
    if not all(isinstance(r, str) for r in repos) or len(set(repos)) != len(repos):
        checker.fail(section, "repos", f"repos in [{section}] must be a list of distinct repo names")
    return Host(
        name=name,
        address=values.get("address", name),
        user=values.get("user"),
        port=port,
        identity_file=Path(identity).expanduser() if identity else None,
        ssh_config=ssh_config_path,
        known_hosts=Path(values.get("known_hosts", "~/.ssh/known_hosts")).expanduser(),
        pg_version=values.get("pg_version"),
        connect_timeout=timeout,
        repos=tuple(repos),
    )


class _Checker:
    """Raises InventoryError with a line number found by looking for the key in its section."""

    def __init__(self, text: str, path: Path) -> None:
        self.lines = text.splitlines()
        self.path = path

    def fail(self, section: str, key: str | None, problem: str) -> None:
        raise InventoryError(f"{self.where(section, key)}: {problem}")

    def where(self, section: str, key: str | None) -> str:
        """file:line of a key (or of its section), or the file alone when not found."""
        line = self._line_of(section, key)
        return f"{self.path}:{line}" if line else str(self.path)

    def table(self, section: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(section, None, f"[{section}] must be a table")
        return value

    def entry(self, kind: str, name: str, raw: Any, spec: dict[str, tuple[tuple[type, ...], str]]) -> dict[str, Any]:
        """A [hosts.NAME] or [repos.NAME] table: its name and its keys checked."""
        section = f"{kind}s.{name}"
        if not NAME_RE.fullmatch(name):
            self.fail(section, None, f"{kind} name {name!r} must be letters, digits, '.', '_' or '-'")
        table = self.table(section, raw)
        self.fields(section, table, spec)
        return table

    def unknown_keys(self, section: str, table: dict[str, Any], allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"[{section}]" if section else "the top level"
                self.fail(section, key, f"unknown key {key!r} in {where}; allowed: {', '.join(sorted(allowed))}")

    def fields(self, section: str, table: dict[str, Any], spec: dict[str, tuple[tuple[type, ...], str]]) -> None:
        self.unknown_keys(section, table, set(spec))
        for key, value in table.items():
            types, description = spec[key]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                self.fail(section, key, f"{key} in [{section}] must be {description}, not {value!r}")

    def _line_of(self, section: str, key: str | None) -> int | None:
        header = re.compile(r"^\s*\[\s*" + re.escape(section).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
        start = 0
        if section:
            start = next((i for i, line in enumerate(self.lines) if header.match(line)), -1)
            if start < 0:
                return None
            if key is None:
                return start + 1
        if key is None:
            return None
        key_re = re.compile(r"^\s*(\[+\s*)?[\"']?" + re.escape(key) + r"[\"']?\s*(=|\.|\])")
        for i in range(start + (1 if section else 0), len(self.lines)):
            if section and i > start and self.lines[i].lstrip().startswith("["):
                break
            if key_re.match(self.lines[i]):
                return i + 1
        return start + 1 if section else None
