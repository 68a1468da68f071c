"""The gateway against an API server that stops answering: real HTTP servers on loopback stand in for it, one that
accepts connections and never answers, one that answers a list and then watches as scripted."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from kubescribe.gateway.errors import Unavailable
from kubescribe.gateway.stores.apiserver import ApiServerClient
from kubescribe.gateway.stores.jobs import JobStore
from kubescribe.gateway.stores.watch import JobWatcher

pytestmark = pytest.mark.timeout(120)


def api_client(port: int, timeout: tuple[float, float] = (1, 1)) -> ApiServerClient:
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    return ApiServerClient(configuration, timeout=timeout)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts every connection and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.1)
            while not stop.is_set():
                try:
                    held.append(server.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield server.getsockname()[1]
        stop.set()
        thread.join()
        for connection in held:
            connection.close()


def test_every_call_of_the_job_store_times_out_and_says_the_api_server_is_unavailable(silent_server: int) -> None:
    jobs = JobStore(api_client(silent_server))
    calls: list[Callable[[], object]] = [
        lambda: jobs.get("team-a", "tj-1"),
        lambda: jobs.list("team-a"),
        lambda: jobs.create({"metadata": {"namespace": "team-a", "name": "tj-1"}}),
        lambda: jobs.delete("team-a", "tj-1"),
    ]
    for call in calls:
        with pytest.raises(Unavailable) as refused:
            call()
        assert refused.value.status_code == 503
        assert refused.value.detail == "the Kubernetes API server is unavailable; try again in a few seconds"
        assert "Retry-After" in (refused.value.headers or {})
    assert not jobs.reachable()


def test_a_refused_connection_and_a_failing_api_server_are_unavailable_too() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(Unavailable):
        JobStore(api_client(port)).list("team-a")

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(Unavailable):
            JobStore(api_client(server.server_address[1])).get("team-a", "tj-1")
    finally:
        server.shutdown()
        server.server_close()


def job(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": name, "resourceVersion": version}, "status": {}}


class ScriptedApiServer:
    """Answers lists of TranscriptionJobs with `listed`, and each watch with the next of `watches`: once its gate is
    open, the events to send, then either the end of the watch or silence (the connection held open, nothing more
    sent)."""

    def __init__(self) -> None:
        self.listed: list[tuple[str, list[dict[str, Any]]]] = []
        self.watches: list[tuple[list[dict[str, Any]], bool, threading.Event | None]] = []
        self.requests: list[dict[str, str]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                query = {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}
                server.requests.append(query)
                if query.get("watch") != "true":
                    version, items = server.listed.pop(0)
                    body = json.dumps({"metadata": {"resourceVersion": version}, "items": items}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                events, silent, gate = server.watches.pop(0) if server.watches else ([], True, None)
                if gate is not None:
                    gate.wait()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")  # as the API server streams a watch
                self.end_headers()
                for event in events:
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                if silent:
                    server.release.wait()
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


def watches(requests: list[dict[str, str]]) -> list[str | None]:
    """Each request in turn: "list", or the resourceVersion a watch started from."""
    return ["list" if query.get("watch") != "true" else query.get("resourceVersion") for query in requests]


def test_the_watch_resumes_from_its_version_relists_when_gone_and_reports_when_it_goes_stale() -> None:
    apiserver = ScriptedApiServer()
    apiserver.listed = [("10", [job("tj-a", "9")]), ("20", [job("tj-b", "19")])]
    apiserver.watches = [
        ([{"type": "ADDED", "object": job("tj-c", "11")}, {"type": "BOOKMARK", "object": job("", "12")}], True, None),
        ([{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}], False, None),
    ]
    now = [1000.0]
    watcher = JobWatcher(api_client(apiserver.port), stale_after=30, clock=lambda: now[0], watch_seconds=1)

    async def scenario() -> None:
        assert watcher.staleness() == "the job watch has not listed the jobs yet"
        watcher.start()
        try:
            await until(lambda: len(apiserver.requests) >= 5, "a relist after 410 Gone and a watch from it")
            await until(lambda: names(watcher) == {"tj-b"}, "the relisted jobs")
            assert watcher.staleness() is None
            now[0] += 31
            assert watcher.staleness() == "the job watch has not been confirmed fresh for 31 s (more than 30 s)"
        finally:
            watcher.stop()

    try:
        asyncio.run(scenario())
    finally:
        apiserver.close()
    # The first watch's silence ends in a read timeout: watched again from its bookmark, not listed again.
    assert watches(apiserver.requests)[:5] == ["list", "10", "12", "list", "20"]
    first_watch = apiserver.requests[1]
    assert (first_watch["timeoutSeconds"], first_watch["allowWatchBookmarks"]) == ("1", "true")


def test_bookmarks_and_watches_the_api_server_ends_confirm_the_cache_fresh() -> None:
    apiserver = ScriptedApiServer()
    apiserver.listed = [("10", [job("tj-a", "9")])]
    bookmark, end = threading.Event(), threading.Event()
    apiserver.watches = [
        ([{"type": "BOOKMARK", "object": job("", "11")}], True, bookmark),
        ([], False, end),
    ]
    now = [0.0]
    # Reads time out after 5 s: time enough for the test to open a gate before the watch waiting on it gives up.
    watcher = JobWatcher(api_client(apiserver.port), stale_after=30, clock=lambda: now[0], watch_seconds=4)

    async def scenario() -> None:
        watcher.start()
        try:
            await until(lambda: len(apiserver.requests) == 2, "the first watch")
            assert names(watcher) == {"tj-a"}
            now[0] = 20
            bookmark.set()
            await until(lambda: len(apiserver.requests) == 3, "the watch from the bookmark, after a read timeout")
            now[0] = 45
            assert watcher.staleness() is None  # 25 s since the bookmark, 45 s since the list
            now[0] = 60
            end.set()
            await until(lambda: len(apiserver.requests) == 4, "the watch after the one the API server ended")
            now[0] = 85
            assert watcher.staleness() is None
            now[0] = 91
            assert watcher.staleness() == "the job watch has not been confirmed fresh for 31 s (more than 30 s)"
        finally:
            watcher.stop()

    try:
        asyncio.run(scenario())
    finally:
        apiserver.close()
    assert watches(apiserver.requests)[:4] == ["list", "10", "11", "11"]


def names(watcher: JobWatcher) -> set[str]:
    return {job["metadata"]["name"] for job in watcher.jobs()}


async def until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)
