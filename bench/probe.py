"""Availability probe: a new connection + `select 1` every 100 ms; prints the longest outage as JSON.

Runs inside a sandbox server (over the unix socket, as the OS user it runs as). Stops on SIGINT or
after --seconds. "max_gap_s" is the longest time between two successful probes, an upper bound on
the downtime an application would see.
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
    args = parser.parse_args()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    deadline = time.monotonic() + args.seconds
    last_ok = None
    max_gap = 0.0
    probes = failures = 0
    while not stop and time.monotonic() < deadline:
        started = time.monotonic()
        probes += 1
        try:
            with psycopg.connect(
                host="/var/run/postgresql", port=args.port, dbname="postgres", connect_timeout=2
            ) as conn:
                conn.execute("select 1")
            now = time.monotonic()
            if last_ok is not None:
                max_gap = max(max_gap, now - last_ok)
            last_ok = now
        except psycopg.Error:
            failures += 1
        time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    print(json.dumps({"probes": probes, "failures": failures, "max_gap_s": round(max_gap, 3)}))


if __name__ == "__main__":
    main()
