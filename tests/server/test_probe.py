"""probe.sh on the throwaway server: what it reads parses into the facts pgmam plans on, and WAL
missing from the repository shows as a hole."""

from __future__ import annotations

from pathlib import Path

from pgmam_remote import facts

from .conftest import Throwaway


def probe(server: Throwaway) -> facts.ServerFacts:
    out = server.run(*facts.probe_command().argv)
    return facts.parse_probe(out.stdout)


def segments(server: Throwaway) -> list[Path]:
    archive = server.path("/var/lib/pgbackrest/archive/shop")
    return sorted(p for p in archive.glob("*/*/*") if len(p.name) > 24 and p.name[24] == "-")


def test_the_probe_reads_the_app_its_stanza_and_no_hole(server: Throwaway):
    found = probe(server)
    shop = found.cluster("shop")
    assert shop is not None and shop.status == "online" and shop.port == 5432 and shop.timeline == 1
    assert shop.archiver is not None and shop.archiver.archived_count >= 1
    assert [b.type for b in found.stanzas["shop"].backups] == ["full"]
    assert found.systemd is False and found.gaps_for("shop") == []


def test_segments_missing_from_the_repository_are_a_hole(server: Throwaway):
    for n in range(5):
        server.sql(f"insert into items values ({1000 + n}, 'segment {n}')")
        server.step("archive-now", 5432, "shop")  # switches to a new segment and waits for it to be archived
    names = segments(server)
    assert len(names) >= 6
    before, gone, after = names[-5], names[-4:-2], names[-2]
    for path in gone:
        path.unlink()  # what pgBackRest's archive-push-queue-max does when the queue overflows
    (gap,) = probe(server).gaps_for("shop")
    assert (gap.before, gap.after, gap.missing) == (before.name[:24], after.name[:24], 2)
    assert gap.before_time <= gap.after_time
