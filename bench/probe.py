"""Availability probe: a new connection every 100 ms that must find the server out of recovery.

Prints the longest outage as JSON.

Connects to --host (a socket directory, or 127.0.0.1 when run in a server's network namespace;
PGUSER and PGPASSWORD as libpq reads them). Stops on SIGINT or
after --seconds. "max_gap_s" is the longest time between two successful probes, an upper bound on
the downtime an application would see; "gap_end_monotonic" is when it ended (CLOCK_MONOTONIC,
comparable with the caller's time.monotonic()).
"""

from __future__ import annotations

import argparse
import json
import signal
import time

import psycopg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--host", default="/var/run/postgresql")
    args = parser.parse_args()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    deadline = time.monotonic() + args.seconds
    last_ok = None
    max_gap = 0.0
    gap_end = None
    probes = failures = 0
    while not stop and time.monotonic() < deadline:
        started = time.monotonic()
        probes += 1
        try:
            with psycopg.connect(host=args.host, port=args.port, dbname="postgres", connect_timeout=2) as conn:
                # a server still replaying WAL accepts read-only connections: not the restored app yet
                if conn.execute("select pg_is_in_recovery()").fetchone()[0]:
                    raise psycopg.OperationalError("in recovery")
            now = time.monotonic()
            if last_ok is not None and now - last_ok > max_gap:
                max_gap, gap_end = now - last_ok, now
            last_ok = now
        except psycopg.Error:
            failures += 1
        time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    report = {"probes": probes, "failures": failures, "max_gap_s": round(max_gap, 3), "gap_end_monotonic": gap_end}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
