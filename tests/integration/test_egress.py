"""Source URLs and the stores jobs name themselves lead only where jobs may connect: loopback, cloud metadata, the
API server and the operator's store are refused, after DNS and at every redirect, and the job fails at once saying
why; an allowed address serves the audio."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.conftest import Kubescribe
from tests.integration.speech import speak, word_error_rate

SENTENCE = "Send the report before noon."
LOOPBACKS = ("127.0.0.1", "::1")
"""What `localhost` resolves to first in a pod: its /etc/hosts names both."""


def resolved(message: str) -> set[str]:
    """The message with `{loopback}` as either loopback address."""
    return {message.replace("{loopback}", address) for address in LOOPBACKS}


class Media(BaseHTTPRequestHandler):
    """Serves the audio at /speech.wav, and redirects /redirect to `Location`."""

    audio = b""
    location = ""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.audio)))
        self.end_headers()
        self.wfile.write(self.audio)

    def log_message(self, *args: object) -> None:
        pass


def serve(address: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, 0), Media)
    server.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers(kubescribe: Kubescribe, speech_dir: Path) -> Iterator[tuple[ThreadingHTTPServer, ThreadingHTTPServer]]:
    """The same audio on the host's address, which the chart allows, and on loopback, which no job may reach."""
    Media.audio = speak(speech_dir, "report", SENTENCE).read_bytes()
    allowed, loopback = serve(kubescribe.host_address), serve("127.0.0.1")
    Media.location = f"http://127.0.0.1:{loopback.server_port}/speech.wav"
    yield allowed, loopback
    for server in (allowed, loopback):
        server.shutdown()


def test_source_urls_reach_allowed_addresses_only(
    kubescribe: Kubescribe, namespace: str, servers: tuple[ThreadingHTTPServer, ThreadingHTTPServer]
) -> None:
    allowed, loopback = servers
    state = kubescribe.cluster.state
    api_server = kubescribe.cluster.local.api_url(state)
    store = kubescribe.cluster.local.s3_url(state)
    loopback_port, api_port, store_port = loopback.server_port, api_server.rsplit(":", 1)[1], store.rsplit(":", 1)[1]
    refused = {
        "loopback": (
            f"http://127.0.0.1:{loopback_port}/speech.wav?token=secret",
            "resolves to 127.0.0.1, a loopback address",
        ),
        # A pod's /etc/hosts names localhost 127.0.0.1 and ::1, as a kubelet writes it: either is refused.
        "localhost": (f"http://localhost:{loopback_port}/speech.wav", "resolves to {loopback}, a loopback address"),
        "metadata": (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "resolves to 169.254.169.254, a link-local address",
        ),
        "api-server": (f"{api_server}/api/v1/secrets", f"resolves to 127.0.0.1:{api_port}, the Kubernetes API server"),
        "store": (f"{store}/audio/{namespace}/talk.wav", f"resolves to 127.0.0.1:{store_port}, the operator's store"),
        "redirect": (
            f"http://{kubescribe.host_address}:{allowed.server_port}/redirect",
            "redirects to a URL that resolves to 127.0.0.1, a loopback address",
        ),
    }
    for name, (url, _) in refused.items():
        kubescribe.submit(namespace, name, source={"url": url})
    allowed_url = f"http://{kubescribe.host_address}:{allowed.server_port}/speech.wav"
    kubescribe.submit(namespace, "allowed", source={"url": allowed_url})

    for name, (_, where) in refused.items():
        status = kubescribe.wait_finished(namespace, name)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "SourceForbidden")
        assert status["message"] in resolved(f"source.url {where}, which jobs may not reach")
        assert status["attempts"] == 1
        assert len(kubescribe.runner_pods(namespace, name)) == 1
        assert kubescribe.warnings(namespace, name).get("SourceForbidden") == status["message"]
    assert loopback.requests == []  # type: ignore[attr-defined]

    status = kubescribe.wait_finished(namespace, "allowed")["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert word_error_rate(SENTENCE, kubescribe.read(status["result"]["outputs"]["txt"])) < 0.5
    assert sorted(allowed.requests) == ["/redirect", "/speech.wav"]  # type: ignore[attr-defined]


class Forwarder:
    """A TCP port on `address` that forwards each connection to `target` (the cluster's MinIO): a store of the
    tenant's own at an address of its own. Counts the connections it accepts."""

    def __init__(self, address: str, target: tuple[str, int]) -> None:
        self.listener = socket.create_server((address, 0))
        self.port = self.listener.getsockname()[1]
        self.target = target
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def own_stores(kubescribe: Kubescribe) -> Iterator[tuple[Forwarder, Forwarder]]:
    """The cluster's MinIO at the host's address, which the chart allows, and at another loopback port."""
    store = kubescribe.cluster.local.s3_url(kubescribe.cluster.state)
    target = ("127.0.0.1", int(store.rsplit(":", 1)[1]))
    allowed, loopback = Forwarder(kubescribe.host_address, target), Forwarder("127.0.0.1", target)
    yield allowed, loopback
    allowed.close()
    loopback.close()


def test_own_stores_are_reached_at_allowed_addresses_only(
    kubescribe: Kubescribe, namespace: str, speech_dir: Path, own_stores: tuple[Forwarder, Forwarder]
) -> None:
    """A job naming its own store (endpoint and credentials) is held to the same rules as a source URL: the
    operator's store stays refused to it, whatever the credentials."""
    allowed, loopback = own_stores
    state = kubescribe.cluster.state
    store = kubescribe.cluster.local.s3_url(state)
    store_port = store.rsplit(":", 1)[1]
    kubescribe.cluster.kubectl(
        "create",
        "secret",
        "generic",
        "own-store",
        "-n",
        namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={state.minio_user}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={state.minio_password}",
    )
    key = f"{namespace}/own.wav"
    kubescribe.upload("audio", key, speak(speech_dir, "report", SENTENCE))
    refused = {
        "own-loopback": (f"http://localhost:{loopback.port}", "{loopback}, a loopback address"),
        "own-metadata": ("http://169.254.169.254", "169.254.169.254, a link-local address"),
        "own-store": (store, f"127.0.0.1:{store_port}, the operator's store"),
    }
    endpoints = {name: endpoint for name, (endpoint, _) in refused.items()}
    endpoints["own-allowed"] = f"http://{kubescribe.host_address}:{allowed.port}"
    for name, endpoint in endpoints.items():
        source = {"s3": {"bucket": "audio", "key": key, "endpoint": endpoint, "secretName": "own-store"}}
        kubescribe.submit(namespace, name, source=source)

    for name, (_, where) in refused.items():
        status = kubescribe.wait_finished(namespace, name)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "SourceForbidden")
        assert status["message"] in resolved(f"source.s3.endpoint resolves to {where}, which jobs may not reach")
        assert status["attempts"] == 1
        assert len(kubescribe.runner_pods(namespace, name)) == 1
        assert kubescribe.warnings(namespace, name).get("SourceForbidden") == status["message"]
    assert loopback.connections == 0

    status = kubescribe.wait_finished(namespace, "own-allowed")["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert word_error_rate(SENTENCE, kubescribe.read(status["result"]["outputs"]["txt"])) < 0.5
    assert allowed.connections > 0
