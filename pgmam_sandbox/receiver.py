"""A webhook receiver on the sandbox network: where the watchdog's alerts go in the tests, the
samples tour and the benchmark, and in a rehearsal of your own.

It listens on this machine's address on the sandbox bridge (the servers reach it there), keeps
each JSON body it is sent, with the path it came to and when, and answers ``code``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, address: str, path: str = "/hook") -> None:
        self.bodies: list[dict] = []
        self.code = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                owner.bodies.append({**body, "path": self.path, "arrived": time.time()})
                self.send_response(owner.code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, app: str | None) -> list[tuple[str, str | None]]:
        """(event, app) of each message about ``app`` (None: the server itself, or a test message)."""
        return [(b["event"], b["app"]) for b in self.bodies if b["app"] == app]

    def wait(self, event: str, timeout: float = 30) -> dict:
        """The first message of that event, waiting for it up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not any(b["event"] == event for b in self.bodies):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} message within {timeout:.0f} s")
            time.sleep(0.2)
        return next(b for b in self.bodies if b["event"] == event)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
