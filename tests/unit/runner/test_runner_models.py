"""An s3:// model's files through the node's model cache, and from the store when the cache cannot serve them."""

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from minio import Minio

from kubescribe.contract import Grant, StoreGrants
from kubescribe.runner.errors import RunnerFailure
from kubescribe.runner.models import MODEL_FILE, resolve_model

FILES = {"/models/m/model.bin": b"weights" * 100, "/models/m/config.json": b"{}"}


class Store(BaseHTTPRequestHandler):
    """Serves FILES at their paths, as presigned GETs of a store do."""

    def do_GET(self) -> None:
        body = FILES.get(self.path.partition("?")[0])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


class BrokenCache(Store):
    def do_POST(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    yield from serve(Store)


@pytest.fixture(scope="module")
def broken_cache() -> Iterator[str]:
    yield from serve(BrokenCache)


def unreachable() -> str:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Store)
    port = httpd.server_address[1]
    httpd.server_close()
    return f"http://127.0.0.1:{port}"


def no_store() -> Minio:
    raise AssertionError("a job with grants never uses store credentials")


@pytest.mark.parametrize("cache", ["unreachable", "broken"])
def test_a_cache_that_cannot_serve_the_model_never_fails_the_job(
    cache: str, store: str, broken_cache: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grants = StoreGrants(
        expires="2099-01-01T00:00:00Z",
        model={
            name: Grant(url=f"{store}/models/m/{name}?X-Amz-Signature=secret", uri=f"s3://models/m/{name}")
            for name in (MODEL_FILE, "config.json")
        },
    )
    node_cache = unreachable() if cache == "unreachable" else broken_cache
    with caplog.at_level(logging.WARNING):
        location = Path(resolve_model("s3://models/m/", tmp_path, no_store, grants, node_cache=node_cache))
    assert (location / MODEL_FILE).read_bytes() == FILES["/models/m/model.bin"]
    assert (location / "config.json").read_bytes() == b"{}"
    assert "reading it from the store" in caplog.text
    assert "secret" not in caplog.text


def test_the_files_of_another_model_are_never_loaded_as_this_one(store: str, tmp_path: Path) -> None:
    """A worker of s3://models/m/ given the URLs of s3://models/mine-too/ (its pool's model changed under it)
    fails rather than load them under its model's name."""
    grants = StoreGrants(
        expires="2099-01-01T00:00:00Z",
        model={MODEL_FILE: Grant(url=f"{store}/models/m/{MODEL_FILE}", uri=f"s3://models/mine-too/{MODEL_FILE}")},
    )
    with pytest.raises(RunnerFailure) as failed:
        resolve_model("s3://models/m/", tmp_path, no_store, grants)
    assert failed.value.reason == "ModelNotFound"
    assert not list(tmp_path.rglob(MODEL_FILE))
