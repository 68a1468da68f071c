"""A batch of 1,000 sources through `POST /v1/batches`: the seconds from the request to its answer, when every job
exists, and the API server requests it took; against the same number of TranscriptionJobs created one after
another by one client straight against the API server (what a script does, one round trip per job)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from bench import kube

FILES = 1000
BASELINE_NAMESPACE = "bench-batch-baseline"
FORMATS = ["txt"]


@dataclass(frozen=True)
class Target:
    """The installed gateway, its caller's namespace, and the jobs' bucket and GPUs (more than a node has: nothing
    runs)."""

    http: Callable[[], httpx.Client]
    namespace: str
    bucket: str
    gpus: int


def source_key(namespace: str, index: int) -> str:
    return f"{namespace}/batch/{index:04d}.wav"


def api_requests(env: dict[str, str]) -> Counter[str]:
    """The API server's requests served so far: all of them (`all`), and those on TranscriptionJobs by verb, dry
    runs apart (`POST`, `POST dry run`, ...)."""
    text = subprocess.run(
        ["kubectl", "get", "--raw", "/metrics"], env=env, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            counts["all"] += int(sample.value)
            if sample.labels.get("resource") == "transcriptionjobs" and not sample.labels.get("subresource"):
                dry_run = " dry run" if sample.labels.get("dry_run") else ""
                counts[f"{sample.labels['verb']}{dry_run}"] += int(sample.value)
    return counts


def difference(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in sorted(after) if after[key] != before[key]}


def one_by_one(api: client.ApiClient, target: Target) -> float:
    """Seconds to create FILES TranscriptionJobs in BASELINE_NAMESPACE, each once the one before is answered."""
    custom = client.CustomObjectsApi(api)
    started = time.monotonic()
    for index in range(FILES):
        body = {
            "apiVersion": "kubescribe.io/v1alpha1",
            "kind": "TranscriptionJob",
            "metadata": {"name": f"file-{index:04d}", "namespace": BASELINE_NAMESPACE},
            "spec": {
                "source": {"s3": {"bucket": target.bucket, "key": source_key(BASELINE_NAMESPACE, index)}},
                "outputs": {"formats": FORMATS},
                "resources": {"gpu": target.gpus},
            },
        }
        custom.create_namespaced_custom_object(
            "kubescribe.io", "v1alpha1", BASELINE_NAMESPACE, "transcriptionjobs", body
        )
    return time.monotonic() - started


def through_the_gateway(target: Target) -> tuple[float, dict[str, Any]]:
    """Seconds from POST /v1/batches of FILES sources to its answer, and the answer."""
    sources = [f"s3://{target.bucket}/{source_key(target.namespace, index)}" for index in range(FILES)]
    with target.http() as http:
        started = time.monotonic()
        response = http.post("/v1/batches", json={"sources": sources, "formats": "txt"})
        elapsed = time.monotonic() - started
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/batches answered {response.status_code}: {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return elapsed, answer


def cancel(target: Target, batch_id: str) -> None:
    with target.http() as http:
        response = http.delete(f"/v1/batches/{batch_id}")
    if response.status_code != 202:
        raise RuntimeError(f"DELETE /v1/batches/{batch_id} answered {response.status_code}: {response.text[:500]}")


def measure(target: Target, env: dict[str, str], api: client.ApiClient) -> dict[str, Any]:
    kube.create_namespace(api, BASELINE_NAMESPACE)
    before = api_requests(env)
    sequential_seconds = one_by_one(api, target)
    middle = api_requests(env)
    batch_seconds, answer = through_the_gateway(target)
    after = api_requests(env)
    created = len(answer.get("jobs", []))
    cancel(target, answer["id"])
    client.CustomObjectsApi(api).delete_collection_namespaced_custom_object(
        "kubescribe.io", "v1alpha1", BASELINE_NAMESPACE, "transcriptionjobs"
    )
    return {
        "files": FILES,
        "jobs_created": created,
        "batch_seconds": round(batch_seconds, 2),
        "one_by_one_seconds": round(sequential_seconds, 2),
        "ratio_batch_to_one_by_one": round(batch_seconds / sequential_seconds, 3),
        "batch_requests": difference(after, middle),
        "one_by_one_requests": difference(middle, before),
    }
