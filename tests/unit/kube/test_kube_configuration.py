"""A long-running process outlives the token it started with: the token its kubeconfig's tokenFile names is read
again, so the one the node wrote last is the one sent."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import kube_config

from kubescribe import kube


@pytest.fixture
def api_server() -> Iterator[tuple[str, list[str]]]:
    """A server answering every GET with an empty namespace list: its URL, and the Authorization headers it got."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            body = b'{"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest.fixture
def token_file(api_server: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file of the token of the kubeconfig in use."""
    token = tmp_path / "token"
    token.write_text("first")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: local, cluster: {{server: "{api_server[0]}"}}}}]
users: [{{name: runner, user: {{tokenFile: "{token}"}}}}]
contexts: [{{name: local, context: {{cluster: local, user: runner}}}}]
current-context: local
"""
    )
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return token


def test_a_replaced_token_is_sent_once_it_is_read_again(api_server: tuple[str, list[str]], token_file: Path) -> None:
    _, seen = api_server
    api = client.CoreV1Api(client.ApiClient(kube.configuration(reread_seconds=0)))
    api.list_namespace()
    token_file.write_text("second")
    api.list_namespace()
    assert seen == ["Bearer first", "Bearer second"]


def test_a_token_is_read_again_only_after_the_period(api_server: tuple[str, list[str]], token_file: Path) -> None:
    _, seen = api_server
    api = client.CoreV1Api(client.ApiClient(kube.configuration(reread_seconds=3600)))
    api.list_namespace()
    token_file.write_text("second")
    api.list_namespace()
    assert seen == ["Bearer first", "Bearer first"]


def test_an_unreadable_kubeconfig_keeps_the_token_read_last(
    api_server: tuple[str, list[str]], token_file: Path
) -> None:
    _, seen = api_server
    api = client.CoreV1Api(client.ApiClient(kube.configuration(reread_seconds=0)))
    token_file.unlink()
    api.list_namespace()
    token_file.write_text("second")
    api.list_namespace()
    assert seen == ["Bearer first", "Bearer second"]
