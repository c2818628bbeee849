"""`pip install .` gives a `pgmam` command that works from any directory, with every server file,
and without the sandbox. Built offline from a copy of the checkout (as a clean clone has it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgmam_remote import cli, server_code

REPO = Path(__file__).resolve().parents[2]
LEFT_OUT = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".sandbox*")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pgmam installed into a directory of its own; returns its `pgmam` command."""
    tmp = tmp_path_factory.mktemp("install")
    shutil.copytree(REPO, tmp / "src", ignore=shutil.ignore_patterns(*LEFT_OUT), symlinks=True)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    offline = ["--no-deps", "--no-index", "--no-build-isolation"]
    subprocess.run([*pip, "wheel", *offline, "-w", tmp / "wheel", tmp / "src"], check=True, capture_output=True)
    (wheel,) = (tmp / "wheel").glob("pgmam-*.whl")
    subprocess.run([*pip, "install", *offline, "--target", tmp / "site", wheel], check=True, capture_output=True)
    return tmp / "site" / "bin" / "pgmam"


def pgmam(command: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command, run from an empty directory (not the checkout)."""
    elsewhere = command.parents[2] / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    config = command.parents[2] / "config"
    environ = {**os.environ, "PYTHONPATH": str(command.parents[1]), "PGMAM_CONFIG_DIR": str(config), **env}
    environ.pop("PGMAM_HOSTS", None)
    return subprocess.run(
        [str(command), *args], cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_installed_command_lists_the_operators_tasks_and_no_sandbox(installed):
    listed = pgmam(installed, "--list")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.startswith("  ") and line.strip()}
    assert names >= {"initcluster", "status", "pitr", "recover", "dropcluster"}
    assert not any(name.startswith("sandbox") for name in names)
    assert pgmam(installed, "--version").stdout.split() == ["pgmam", "0.1.0"]
    assert "--purge-backups" in pgmam(installed, "dropcluster", "--help").stdout


def test_the_installed_package_carries_every_server_file(installed):
    code = "from pgmam_remote import server_code; print(server_code.VERSION)"
    site = installed.parents[1]
    there = subprocess.run(
        [sys.executable, "-c", code],
        cwd=site.parent,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert there.stdout.strip() == server_code.VERSION  # same bundle: no script, awk or unit file missing


def test_the_installed_command_reads_the_inventory_in_its_config_dir(installed):
    config = installed.parents[2] / "config"
    config.mkdir()
    (config / "hosts.toml").write_text('[hosts.prod1]\naddress = "192.0.2.10"\nflavour = "x"\n')
    try:
        out = pgmam(installed, "status", "--all-hosts")
    finally:
        (config / "hosts.toml").unlink()
    assert out.returncode == 1
    assert f"{config / 'hosts.toml'}:3" in out.stderr and "flavour" in out.stderr  # refused before any connection


def test_operators_runs_never_import_the_sandbox():
    code = "import sys; from pgmam_remote import cli; cli.collection(); print('pgmam_sandbox' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert {t.name for t in cli.TASKS}.isdisjoint({"up", "down", "reboot", "lose"})
