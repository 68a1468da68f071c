"""The node's kubelet API, the part `kubectl logs` reaches through the API server: `GET /containerLogs/<namespace>/
<pod>/<container>` with `follow`, `previous`, `tailLines` and `limitBytes`, and `/healthz`. It serves TLS with the
node's certificate and answers only the API server's kubelet client certificate."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("localcluster.nodeagent")

FOLLOW_POLL_SECONDS = 0.2
CHUNK = 64 << 10


@dataclass(frozen=True)
class LogSource:
    """A container's log file and whether it may still grow."""

    path: Path
    running: Callable[[], bool]


LogFinder = Callable[[str, str, str, bool], LogSource | str]
"""(namespace, pod, container, previous) -> the log, or why there is none."""


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    """The last `lines` lines of `data`, then at most its first `limit` bytes, as a kubelet cuts a log."""
    if lines is not None:
        kept = data.splitlines(keepends=True)
        data = b"".join(kept[-lines:]) if lines > 0 else b""
    return data[:limit] if limit is not None else data


def follow(source: LogSource, start: int, stopped: threading.Event) -> Iterator[bytes]:
    """What is written to the log from `start` on, until its container stops and all of it was read."""
    offset = start
    with source.path.open("rb") as file:
        while not stopped.is_set():
            file.seek(offset)
            data = file.read(CHUNK)
            if data:
                offset += len(data)
                yield data
                continue
            if not source.running():
                return
            time.sleep(FOLLOW_POLL_SECONDS)


class KubeletApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, tls: tuple[Path, Path, Path], client_user: str, find: LogFinder) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        cert, key, ca = tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.client_user = client_user
        self.find = find
        self.stopped = threading.Event()

    def serve_in_background(self) -> None:
        threading.Thread(target=self.serve_forever, name="kubelet-api", daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    server: KubeletApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet API: " + format, *args)

    def do_GET(self) -> None:
        if self._caller() != self.server.client_user:
            self._answer(403, b"Forbidden: only the API server may call this node's kubelet API\n")
            return
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts == ["healthz"]:
            self._answer(200, b"ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._answer(404, b"404 page not found\n")
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            lines = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None
        except ValueError:
            self._answer(400, b"tailLines and limitBytes must be integers\n")
            return
        found = self.server.find(parts[1], parts[2], parts[3], query.get("previous") == "true")
        if isinstance(found, str):
            self._answer(400, found.encode() + b"\n")
            return
        data = found.path.read_bytes()
        if query.get("follow") != "true" or limit is not None:
            self._answer(200, tail(data, lines, limit))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._chunk(tail(data, lines, None))
            for chunk in follow(found, len(data), self.server.stopped):
                self._chunk(chunk)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _caller(self) -> str | None:
        certificate = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        subject: Any = (certificate or {}).get("subject", ())
        names = [value for field in subject for key, value in field if key == "commonName"]
        return str(names[0]) if names else None

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
