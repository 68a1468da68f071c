"""Every call the operator makes to the API server or the store ends within its timeout, answered or not."""

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from kubernetes import client
from kubernetes.config import kube_config
from minio.deleteobjects import DeleteObject

from kubescribe.operator import clients
from kubescribe.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(request_timeout_seconds=0.5, s3_endpoint="http://127.0.0.1:9")


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """An HTTP server that accepts connections and never answers: its URL, and the connections it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for connection in accepted:
        connection.close()


def test_an_api_server_that_never_answers_gets_a_timeout_error(
    silent_server: tuple[str, list[socket.socket]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, accepted = silent_server
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: silent, cluster: {{server: "{url}"}}}}]
users: [{{name: someone, user: {{token: t}}}}]
contexts: [{{name: silent, context: {{cluster: silent, user: someone}}}}]
current-context: silent
"""
    )
    # What KUBECONFIG names, as the client reads it when it is first imported.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    api = clients.api_client(SETTINGS)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError, match="Read timed out"):
        client.CoreV1Api(api).list_namespace()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        client.CustomObjectsApi(api).list_cluster_custom_object("kubescribe.io", "v1alpha1", "transcriptionjobs")
    assert len(accepted) == 2  # each call made once, not retried


def test_a_store_that_never_answers_gets_a_timeout_error(silent_server: tuple[str, list[socket.socket]]) -> None:
    url, accepted = silent_server
    store = clients.store(SETTINGS.model_copy(update={"s3_endpoint": url}))
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        list(store.remove_objects("transcripts", [DeleteObject("team-a/talk/talk.json")]))
    assert len(accepted) == 1
