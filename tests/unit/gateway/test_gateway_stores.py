"""The object store: uploads streamed to S3 in parts while the file fills, a store that refuses or fails; the job
watch's followers."""

from __future__ import annotations

import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client import ApiClient

from kubescribe.gateway.errors import Unavailable
from kubescribe.gateway.settings import GatewaySettings
from kubescribe.gateway.stores.objects import PART_SIZE, StreamingUpload, object_store, reachable
from kubescribe.gateway.stores.watch import JobWatcher


class FakeStore:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.calls: list[str] = []
        self.headers: dict[str, str] = {}

    def _create_multipart_upload(self, bucket: str, key: str, headers: dict[str, str]) -> str:
        self.calls.append("create")
        self.headers = headers
        return "up-1"

    def _upload_part(self, bucket: str, key: str, data: bytes, headers: Any, upload_id: str, number: int) -> str:
        assert number == len(self.parts) + 1
        self.parts.append(data)
        return f"etag-{number}"

    def _complete_multipart_upload(self, bucket: str, key: str, upload_id: str, parts: list[Any]) -> None:
        self.calls.append(f"complete {[p.part_number for p in parts]}")

    def _abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.calls.append("abort")


def test_streaming_uploads_send_parts_as_the_file_fills_and_complete_only_when_committed() -> None:
    content = bytes(range(256)) * ((2 * PART_SIZE + 1000) // 256)
    store = FakeStore()
    with tempfile.TemporaryFile() as file:
        upload = StreamingUpload(store, "audio", "k", file, filename="a b.wav")  # type: ignore[arg-type]
        for start in range(0, len(content), 1 << 20):
            file.write(content[start : start + (1 << 20)])
            file.flush()
            upload.written(file.tell())
        upload.written(file.tell(), finished=True)
        upload.commit()
        upload.discard()
    assert b"".join(store.parts) == content
    assert [len(part) for part in store.parts] == [PART_SIZE, PART_SIZE, len(content) - 2 * PART_SIZE]
    assert store.calls == ["create", "complete [1, 2, 3]"]
    assert store.headers["x-amz-meta-filename"] == "a%20b.wav"

    store = FakeStore()
    with tempfile.TemporaryFile() as file:
        upload = StreamingUpload(store, "audio", "k", file, filename="a.wav")  # type: ignore[arg-type]
        file.write(content)
        file.flush()
        upload.written(PART_SIZE + 10)
        upload.discard()
        upload.discard()
    assert store.calls in (["create", "abort"], [])
    with pytest.raises(RuntimeError):
        upload.commit()


def test_a_follower_that_never_reads_holds_only_the_latest_change() -> None:
    watcher = JobWatcher(ApiClient())
    with watcher.follow("team-a", "tj-1") as changes, watcher.follow("team-a", "tj-2") as other:
        for percent in range(10_000):
            job = {"metadata": {"namespace": "team-a", "name": "tj-1"}, "status": {"progress": {"percent": percent}}}
            watcher._apply(("team-a", "tj-1"), job)
        assert changes.qsize() == 1
        assert changes.get_nowait() == job
        assert other.empty()
        watcher._apply(("team-a", "tj-1"), None)
        assert changes.get_nowait() is None


def test_a_store_that_refuses_or_fails_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        refusing = taken.getsockname()[1]
    try:
        for port in (server.server_address[1], refusing):
            monkeypatch.setenv("KUBESCRIBE_GATEWAY_S3_ENDPOINT", f"http://127.0.0.1:{port}")
            store = object_store(GatewaySettings())
            with pytest.raises(Unavailable) as refused:
                store.stat_object("audio", "team-a/uploads/tj-1/audio")
            assert refused.value.detail == "the object store is unavailable; try again in a few seconds"
            assert not reachable(store, "audio")
    finally:
        server.shutdown()
        server.server_close()
