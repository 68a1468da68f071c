"""A pool worker's lifecycle (loading its model, taking assignments, draining) and the health endpoints that show
it to the kubelet."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubescribe.contract import WORKER_LIVENESS_PATH, WORKER_READINESS_PATH

STALL_SECONDS = 60.0
"""A loop that has not come round for this long is stuck: the liveness probe fails."""


class Lifecycle:
    """Where the worker is: loading its model, then taking assignments until it drains, then done once its running
    attempts are. Its loop beats on each turn."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.loaded = False
        self.draining = False
        self._beat: float | None = None

    def beat(self) -> None:
        self._beat = self._clock()

    def ready(self) -> bool:
        """Whether it takes assignments."""
        return self.loaded and not self.draining

    def alive(self) -> bool:
        """Whether its loop turns; while the model loads, there is no loop yet."""
        return self._beat is None or self._clock() - self._beat < STALL_SECONDS

    def done(self, running: int) -> bool:
        """Whether the worker may exit: draining, with nothing left running."""
        return self.draining and running == 0


def serve_health(port: int, lifecycle: Lifecycle) -> ThreadingHTTPServer:
    """GET /readyz and /healthz on `port`, answered from a thread of their own."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks = {WORKER_READINESS_PATH: lifecycle.ready, WORKER_LIVENESS_PATH: lifecycle.alive}
            check = checks.get(self.path)
            status = 404 if check is None else 200 if check() else 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds are not worth a log line each."""

    server = ThreadingHTTPServer(("", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
