"""install.sh: the server code arrives intact, by content hash, once; old versions go when nothing
names them; and the boot-time recovery is installed (here cron's @reboot: no systemd)."""

from __future__ import annotations

from pgmam_remote import server_code

from .conftest import Throwaway

CODE = "/var/lib/pgmam/code"


def install(box: Throwaway, version: str = server_code.VERSION, bundle: str = server_code.BUNDLE, **kwargs):
    return box.script("install.sh", version, bundle, **kwargs)


def test_the_code_is_installed_by_its_hash_and_checked(bare: Throwaway):
    first = install(bare)
    assert f"installed server code {server_code.VERSION}" in first.stderr
    installed = bare.path(f"{CODE}/{server_code.VERSION}")
    assert (installed / "MANIFEST").read_text() == server_code.MANIFEST
    for name, data in server_code.FILES.items():
        assert (installed / name).read_bytes() == data
    assert oct((installed / "steps/move.sh").stat().st_mode & 0o777) == "0o755"
    assert bare.run("readlink", "/var/lib/pgmam/current").stdout.strip() == f"code/{server_code.VERSION}"
    cron = bare.path("/etc/cron.d/pgmam-recover").read_text()
    assert "@reboot root /bin/sh /var/lib/pgmam/current/recover-jobs.sh" in cron
    again = install(bare)
    assert again.stderr == ""  # already there: nothing unpacked, nothing said


def test_a_bundle_that_does_not_match_its_version_is_refused(bare: Throwaway):
    install(bare)
    forged = "0123456789abcdef"
    refused = install(bare, forged, check=False)
    assert refused.returncode == 1 and "did not arrive intact" in refused.stderr
    assert not bare.path(f"{CODE}/{forged}").exists()
    assert bare.run("readlink", "/var/lib/pgmam/current").stdout.strip() == f"code/{server_code.VERSION}"
    assert [p.name for p in bare.path(CODE).iterdir()] == [server_code.VERSION]  # no temp dir left


def test_old_versions_go_once_no_job_or_schedule_names_them(bare: Throwaway):
    install(bare)
    for old in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"):
        bare.path(f"{CODE}/{old}").mkdir()
        (bare.path(f"{CODE}/{old}") / "MANIFEST").write_text("")
    job = bare.path("/var/lib/pgmam/jobs/pitr-shop-20261202T000000Z")
    job.mkdir(parents=True)
    (job / "job.sh").write_text(f". {CODE}/bbbbbbbbbbbbbbbb/job-runner.sh\n")
    template = bare.path("/var/lib/pgmam/schedules/shop")
    template.mkdir(parents=True)
    (template / "full.job").write_text(f"step 1 backup '{CODE}/cccccccccccccccc/steps/backup.sh shop 15 full'\n")
    install(bare)
    assert sorted(p.name for p in bare.path(CODE).iterdir()) == sorted(
        [server_code.VERSION, "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"]
    )  # nothing new was installed: nothing is pruned
    bare.run("rm", "-rf", f"{CODE}/{server_code.VERSION}")
    install(bare)
    kept = sorted(p.name for p in bare.path(CODE).iterdir())
    assert kept == sorted([server_code.VERSION, "bbbbbbbbbbbbbbbb", "cccccccccccccccc"])
