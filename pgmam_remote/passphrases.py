"""The passphrases of off-host repos: made once on the operator's machine, kept there, 0600.

pgBackRest encrypts an off-host repo with aes-256-cbc under this passphrase; the repository
host holds it too (root:postgres, 0640), and nothing else does. Without it, the off-host backups
cannot be read: the README asks the operator to keep a copy somewhere safe.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from .errors import Refusal

CONFIG_ENV = "PGMAM_CONFIG_DIR"


def config_dir() -> Path:
    env = os.environ.get(CONFIG_ENV)
    return Path(env).expanduser() if env else Path("~/.config/pgmam").expanduser()


def path(repo: str) -> Path:
    return config_dir() / f"repo-{repo}.passphrase"


def read(repo: str) -> str | None:
    try:
        return path(repo).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def create(repo: str) -> str:
    """A new random passphrase, written once (never over an existing file)."""
    target = path(repo)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    passphrase = secrets.token_urlsafe(48)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(passphrase + "\n")
    return passphrase


def fingerprint(passphrase: str) -> str:
    """What a repository host reports of its passphrase: its sha256, never the passphrase."""
    return hashlib.sha256(passphrase.encode()).hexdigest()


def missing(repo: str, held: str) -> Refusal:
    """The refusal of a repo whose passphrase is gone while ``held`` says what it already keeps."""
    where = path(repo)
    return Refusal(
        f"repo {repo}: its passphrase is missing ({where}){held}",
        hint=f"put the copy you kept of that file back at {where}; without it those backups cannot be read",
    )


def wrong(repo: str, backups: str) -> Refusal:
    """The refusal of a passphrase that does not open ``backups`` (e.g. "the backups of prod1 on vault1")."""
    where = path(repo)
    return Refusal(
        f"repo {repo}: the passphrase in {where} is not the one {backups} were encrypted with",
        hint=f"restore the right copy of {where}",
    )


def made(repo: str) -> str:
    """What to say when a repo's passphrase was just made."""
    return (
        f"new passphrase for repo {repo}: {path(repo)}. Keep a copy somewhere safe, off this machine: "
        "without it the off-host backups cannot be read"
    )
