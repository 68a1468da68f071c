"""The source's byte cap and download deadline, on each way a source comes (a presigned URL, the job's own store,
a URL), against a real HTTP server: a declared size beyond the cap is refused before the body is read, an
undeclared one is counted while it streams, a trickle is stopped at the deadline, and nothing partial is left."""

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from kubescribe.api.v1alpha1 import Source
from kubescribe.contract import EXIT_BAD_INPUT, EgressRules, Grant, StoreGrants
from kubescribe.runner.config import S3Settings
from kubescribe.runner.errors import RunnerFailure
from kubescribe.runner.source import fetch
from kubescribe.runner.transfer import Cap

CAP = Cap(max_bytes=1 << 20, seconds=60)
BODY = bytes(range(256)) * 8192
"""2 MiB: twice the cap."""
LOOPBACK_ALLOWED = EgressRules.model_validate({"allowed_private_ranges": ["127.0.0.1/32"]})
LOCATION = b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">us-east-1</LocationConstraint>'


class Handler(BaseHTTPRequestHandler):
    """/sized/...: the body with its length; /chunked/...: the body without one; /trickle/...: a byte at a time;
    /small/...: a body within the cap. S3 asks for a bucket's location, and a HEAD before a GET."""

    protocol_version = "HTTP/1.1"
    bodies_sent: ClassVar[list[str]] = []
    stop = threading.Event()

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the runner hangs up on what it refuses
            super().handle()

    def do_HEAD(self) -> None:
        self._headers(len(self._body()))

    def do_GET(self) -> None:
        if "location" in self.path:
            self._headers(len(LOCATION))
            self.wfile.write(LOCATION)
            return
        body = self._body()
        if self.path.startswith("/trickle/"):
            self._headers(len(body))
            while not self.stop.is_set():
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)
            return
        if self.path.startswith("/chunked/"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 65536):
                chunk = body[start : start + 65536]
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self._headers(len(body))
        self.bodies_sent.append(self.path)
        self.wfile.write(body)

    def _body(self) -> bytes:
        return BODY[:1000] if self.path.startswith("/small/") else BODY

    def _headers(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", '"0"')
        self.send_header("Last-Modified", "Mon, 23 Nov 2026 12:00:00 GMT")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.stop.set()
    httpd.shutdown()


def ways(server: str, kind: str) -> dict[str, tuple[Source, StoreGrants | None]]:
    """The source at `/<kind>/audio/talk.wav`, as each of the three ways a runner fetches one."""
    key, uri = "talk.wav", "s3://audio/talk.wav"
    grant = Grant(url=f"{server}/{kind}/audio/{key}?X-Amz-Signature=abc", uri=uri)
    return {
        "presigned": (
            Source.model_validate({"s3": {"bucket": "audio", "key": key}}),
            StoreGrants(expires="x", source=grant),
        ),
        "own store": (
            Source.model_validate(
                {"s3": {"bucket": kind, "key": f"audio/{key}", "endpoint": server, "secretName": "s"}}
            ),
            None,
        ),
        "url": (Source.model_validate({"url": f"{server}/{kind}/audio/{key}"}), None),
    }


def fetched(source: Source, grants: StoreGrants | None, destination: Path, cap: Cap = CAP) -> RunnerFailure | None:
    try:
        fetch(source, S3Settings(None, "id", "secret"), grants, LOOPBACK_ALLOWED, destination, cap=cap)
    except RunnerFailure as failure:
        assert failure.exit_code == EXIT_BAD_INPUT
        assert not destination.exists()
        return failure
    return None


@pytest.mark.parametrize("way", ["presigned", "own store", "url"])
def test_a_declared_size_beyond_the_cap_is_refused_before_the_body(server: str, tmp_path: Path, way: str) -> None:
    source, grants = ways(server, "sized")[way]
    Handler.bodies_sent.clear()
    failure = fetched(source, grants, tmp_path / "source")
    assert failure is not None
    assert failure.reason == "SourceTooLarge"
    assert "is 2.0 MiB, more than 1.0 MiB, the largest source this cluster takes (runner.maxSourceBytes)" in (
        failure.message
    )
    assert "X-Amz-Signature" not in failure.message
    if way == "own store":  # the size was known from the HEAD (another way's GET may still be ending)
        assert "/sized/audio/talk.wav" not in Handler.bodies_sent


@pytest.mark.parametrize("way", ["presigned", "url"])
def test_an_undeclared_size_is_counted_while_it_streams(server: str, tmp_path: Path, way: str) -> None:
    source, grants = ways(server, "chunked")[way]
    failure = fetched(source, grants, tmp_path / "source")
    assert failure is not None
    assert failure.reason == "SourceTooLarge"
    assert failure.message.endswith(
        "holds more than 1.0 MiB, the largest source this cluster takes (runner.maxSourceBytes)"
    )


@pytest.mark.parametrize("way", ["presigned", "own store", "url"])
def test_a_trickle_is_stopped_at_the_deadline(server: str, tmp_path: Path, way: str) -> None:
    source, grants = ways(server, "trickle")[way]
    failure = fetched(source, grants, tmp_path / "source", Cap(max_bytes=1 << 30, seconds=1))
    assert failure is not None
    assert failure.reason == "SourceTooSlow"
    assert "did not finish downloading within 1 s (runner.downloadTimeoutSeconds)" in failure.message


@pytest.mark.parametrize("way", ["presigned", "own store", "url"])
def test_a_source_within_the_caps_is_saved_whole(server: str, tmp_path: Path, way: str) -> None:
    source, grants = ways(server, "small")[way]
    assert fetched(source, grants, tmp_path / "source") is None
    assert (tmp_path / "source").read_bytes() == BODY[:1000]
