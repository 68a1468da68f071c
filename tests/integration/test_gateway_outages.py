"""The gateway when the API server or the store is down, and when it dies mid-upload: gateway processes of their own
on the local cluster, reaching the API server and MinIO through TCP proxies the tests close and open again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubescribe.gateway.stores.objects import incomplete_uploads
from localcluster.cluster import free_port
from localcluster.kubeconfig import kubeconfig, write_kubeconfig, write_private
from tests.integration.conftest import Cluster, Gateway, Kubescribe, wait_for
from tests.integration.speech import speak

ERROR_FIELDS = {"message", "type", "param", "code"}


class Proxy:
    """A TCP proxy from a port of its own to `target_port`. `stop` closes it and every connection through it, so
    connections are refused; `start` opens it again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        assert self._listener is not None
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept, which close alone does not
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class GatewayProcess:
    """`kubescribe-gateway` run as a process of the test, with the gateway's ServiceAccount token."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.url = f"http://127.0.0.1:{env['KUBESCRIBE_GATEWAY_PORT']}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **settings: str) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubescribe.gateway"],
                env={**self.env, **settings},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> httpx.Response:
        return wait_for(lambda: readiness(self.url, 200), 90, f"{self.url}/readyz to answer 200")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


def readiness(url: str, status: int) -> httpx.Response | None:
    try:
        response = httpx.get(f"{url}/readyz", timeout=30)
    except httpx.HTTPError:
        return None
    return response if response.status_code == status else None


@pytest.fixture
def gateway_env(cluster: Cluster, kubescribe: Kubescribe, gateway: Gateway, tmp_path: Path) -> dict[str, str]:
    """What a gateway process needs, as the chart gives it; KUBECONFIG reaches the API server directly
    (`with_api_server` points one at a proxy) with the gateway ServiceAccount's token, read from its `tokenFile`."""
    token_file = write_private(tmp_path / "token", gateway_token(cluster, kubescribe))
    admin = yaml.safe_load(cluster.local.admin_kubeconfig.read_text())
    ca_file = Path(admin["clusters"][0]["cluster"]["certificate-authority"])
    config = kubeconfig(cluster.local.api_url(cluster.state), ca_file, user="kubescribe-gateway", token_file=token_file)
    return {
        **os.environ,
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "gateway.kubeconfig", config)),
        "KUBESCRIBE_GATEWAY_HOST": "127.0.0.1",
        "KUBESCRIBE_GATEWAY_PORT": str(free_port()),
        "KUBESCRIBE_GATEWAY_METRICS_PORT": str(free_port()),
        "KUBESCRIBE_GATEWAY_S3_ENDPOINT": cluster.local.s3_url(cluster.state),
        "AWS_ACCESS_KEY_ID": cluster.state.minio_user,
        "AWS_SECRET_ACCESS_KEY": cluster.state.minio_password,
        "KUBESCRIBE_GATEWAY_KEYS_SECRET_NAMESPACE": kubescribe.namespace,
        "KUBESCRIBE_GATEWAY_KEYS_CACHE_SECONDS": "1",
        "KUBESCRIBE_GATEWAY_JOB_GPUS": "0",
    }


def gateway_token(cluster: Cluster, kubescribe: Kubescribe, *bound_to_secret: str) -> str:
    bound = ["--bound-object-kind", "Secret", "--bound-object-name", *bound_to_secret] if bound_to_secret else []
    account = ("kubescribe-gateway", "-n", kubescribe.namespace)
    return cluster.kubectl("create", "token", *account, *bound).stdout.strip()


def token_file(env: dict[str, str]) -> Path:
    return Path(yaml.safe_load(Path(env["KUBECONFIG"]).read_text())["users"][0]["user"]["tokenFile"])


def with_api_server(env: dict[str, str], port: int, path: Path) -> dict[str, str]:
    config = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    return {**env, "KUBECONFIG": str(write_kubeconfig(path, config))}


@contextlib.contextmanager
def running(process: GatewayProcess, **settings: str) -> Iterator[GatewayProcess]:
    process.start(**settings)
    try:
        yield process
    finally:
        process.kill(signal.SIGTERM)


def assert_unavailable(response: httpx.Response, service: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert set(error) == ERROR_FIELDS
    assert (error["type"], error["code"]) == ("server_error", "service_unavailable")
    assert service in error["message"]


def uploaded_keys(kubescribe: Kubescribe, namespace: str) -> list[str]:
    listed = kubescribe.s3.list_objects("audio", prefix=f"{namespace}/uploads/", recursive=True)
    return [item.object_name for item in listed]


def test_outages_of_the_store_and_the_api_server_answer_503_with_retry_after_until_they_are_back(
    cluster: Cluster,
    kubescribe: Kubescribe,
    gateway: Gateway,
    gateway_env: dict[str, str],
    namespace: str,
    speech_dir: Path,
    tmp_path: Path,
) -> None:
    wav = speak(speech_dir, "outage", "The store is down for a moment.")
    key = gateway.create_key(namespace, "outages")
    api_server = Proxy(int(cluster.local.api_url(cluster.state).rsplit(":", 1)[1]))
    store = Proxy(int(cluster.local.s3_url(cluster.state).rsplit(":", 1)[1]))
    env = with_api_server(gateway_env, api_server.port, tmp_path / "proxied.kubeconfig")
    env["KUBESCRIBE_GATEWAY_S3_ENDPOINT"] = f"http://127.0.0.1:{store.port}"
    api_server.start()
    store.start()
    process = GatewayProcess(env, tmp_path / "gateway.log")
    with running(process):
        ready = process.ready().json()
        assert ready["checks"] == {"kubernetes": True, "s3": True, "watch": True, "keys": True}
        client = httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)

        def upload() -> httpx.Response:
            with wav.open("rb") as audio:
                return client.post("/v1/jobs", files={"file": ("outage.wav", audio)}, data={"model": "tiny.en"})

        store.stop()
        assert_unavailable(upload(), "the object store")
        assert cluster.get("tj", "-n", namespace)["items"] == []
        down = readiness(process.url, 503)
        assert down is not None and down.json()["checks"]["s3"] is False

        store.start()
        accepted = upload()
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200

        api_server.stop()
        for response in (client.get(f"/v1/jobs/{job_id}"), client.get("/v1/jobs"), upload()):
            assert_unavailable(response, "the Kubernetes API server")
        assert uploaded_keys(kubescribe, namespace) == [f"{namespace}/uploads/{job_id}/audio"]
        down = readiness(process.url, 503)
        assert down is not None and down.json()["checks"]["kubernetes"] is False
        assert "the Kubernetes API server is not reachable" in down.json()["error"]["message"]

        api_server.start()
        again = wait_for(lambda: client.get(f"/v1/jobs/{job_id}").status_code == 200, 60, "job reads to work again")
        assert again
        assert [job["id"] for job in client.get("/v1/jobs").json()["jobs"]] == [job_id]
        process.ready()
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 202
    api_server.stop()
    store.stop()


def test_a_running_gateway_takes_the_new_token_once_its_own_is_revoked(
    cluster: Cluster,
    kubescribe: Kubescribe,
    gateway: Gateway,
    gateway_env: dict[str, str],
    namespace: str,
    tmp_path: Path,
) -> None:
    """A pod's token expires within hours and its node writes a new one where the kubeconfig's tokenFile points: a
    gateway running longer than its first token keeps reaching the API server."""
    key = gateway.create_key(namespace, "tokens")
    for secret in ("first-gateway-token", "second-gateway-token"):
        cluster.kubectl("create", "secret", "generic", secret, "-n", kubescribe.namespace)
    write_private(token_file(gateway_env), gateway_token(cluster, kubescribe, "first-gateway-token"))
    process = GatewayProcess(gateway_env, tmp_path / "gateway.log")
    with running(process):
        process.ready()
        client = httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert client.get("/v1/jobs").status_code == 200

        cluster.kubectl("delete", "secret", "first-gateway-token", "-n", kubescribe.namespace)
        wait_for(lambda: client.get("/v1/jobs").status_code != 200, 60, "the revoked token to be refused")
        write_private(token_file(gateway_env), gateway_token(cluster, kubescribe, "second-gateway-token"))
        wait_for(lambda: client.get("/v1/jobs").status_code == 200, 120, "the gateway to take the new token")
    cluster.kubectl("delete", "secret", "second-gateway-token", "-n", kubescribe.namespace)


def multipart_head(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny.en\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="long.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


def test_a_gateway_killed_mid_upload_leaves_no_upload_job_or_object_once_it_starts_again(
    cluster: Cluster,
    kubescribe: Kubescribe,
    gateway: Gateway,
    gateway_env: dict[str, str],
    namespace: str,
    tmp_path: Path,
) -> None:
    key = gateway.create_key(namespace, "killed")
    process = GatewayProcess(gateway_env, tmp_path / "gateway.log")
    boundary, hold = "kubescribe-outage", threading.Event()

    def body() -> Iterator[bytes]:
        yield multipart_head(boundary)
        for _ in range(160):  # 10 MiB: more than one part, so the multipart upload has begun
            yield os.urandom(64 << 10)
        hold.wait()
        yield b"never sent"

    answers: list[Any] = []

    def post() -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
        try:
            answers.append(httpx.post(f"{process.url}/v1/jobs", content=body(), headers=headers, timeout=120))
        except httpx.HTTPError as error:
            answers.append(error)

    prefix = f"{namespace}/uploads/"

    def ours() -> list[str]:
        return [upload.key for upload in incomplete_uploads(kubescribe.s3, "audio") if upload.key.startswith(prefix)]

    with running(process):
        process.ready()
        poster = threading.Thread(target=post)
        poster.start()
        try:
            begun = wait_for(ours, 120, "the gateway to begin the multipart upload")
            process.kill()
        finally:
            hold.set()
            poster.join()
    assert isinstance(answers[0], httpx.HTTPError)  # the gateway died: no answer
    assert ours() == begun  # left behind

    with running(process, KUBESCRIBE_GATEWAY_ABANDONED_UPLOAD_SECONDS="1"):
        process.ready()
        wait_for(lambda: not ours(), 60, "the restarted gateway to abort the incomplete upload")
    assert cluster.get("tj", "-n", namespace)["items"] == []
    assert uploaded_keys(kubescribe, namespace) == []
    job_id = begun[0].removeprefix(prefix).split("/")[0]
    assert kubescribe.job(namespace, job_id) is None
