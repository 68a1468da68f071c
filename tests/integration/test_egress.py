"""Source URLs lead only where jobs may connect: loopback, cloud metadata, the API server and the store are refused,
after DNS and at every redirect, and the job fails at once saying why; an allowed address serves the audio."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.conftest import Kubescribe
from tests.integration.speech import speak, word_error_rate

SENTENCE = "Send the report before noon."


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
        "localhost": (f"http://localhost:{loopback_port}/speech.wav", "resolves to 127.0.0.1, a loopback address"),
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
        message = f"source.url {where}, which jobs may not reach"
        assert (status["phase"], status["reason"], status["message"]) == ("Failed", "SourceForbidden", message)
        assert status["attempts"] == 1
        assert len(kubescribe.runner_pods(namespace, name)) == 1
        assert kubescribe.warnings(namespace, name).get("SourceForbidden") == message
    assert loopback.requests == []  # type: ignore[attr-defined]

    status = kubescribe.wait_finished(namespace, "allowed")["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert word_error_rate(SENTENCE, kubescribe.read(status["result"]["outputs"]["txt"])) < 0.5
    assert sorted(allowed.requests) == ["/redirect", "/speech.wav"]  # type: ignore[attr-defined]
