"""Many short jobs: JOBS TranscriptionJobs of 10 to 25 s of speech each, created at once, first each in a runner pod
of its own (execution Isolated), then in a runner pool of one warm worker (execution Pooled); both with at most
RUNNING jobs running at once. For each side: the time from the first creation until the last job succeeded
(throughput, in jobs and in seconds of audio per second), and each job's time from its creation until it succeeded
(p50, p99), as a watch of the namespace's jobs saw them."""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from minio import Minio

from bench import gateway, kube
from bench.latency import JobWatch, wait_for_pool
from bench.speech import TEXT, speak
from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, Execution
from localcluster.cluster import ClusterState, LocalCluster

JOBS = 100
RUNNING = 4
"""Jobs running at once, on either side: on the bench's small machine, a hundred runner pods at once would not fit
in its memory."""
CLIP_WORDS = (30, 40, 50, 60, 70)
"""The clips' lengths in words: 10 to 25 s of espeak-ng's speech at 150 words a minute."""
NAMESPACE = "bench-short"
POOL = "short"
POOL_VALUES = {"operator.maxRunningJobs": str(RUNNING), **gateway.pool_values(POOL, NAMESPACE, RUNNING)}
CREATE_THREADS = 10
TIMEOUT_SECONDS = 1800.0


@dataclass
class Side:
    """One side's run: when it started, and each job's marks from the watch."""

    started: float
    marks: dict[str, dict[str, float]]
    audio_seconds: float

    def summary(self) -> dict[str, Any]:
        finished = [marks["Succeeded"] for marks in self.marks.values()]
        completion = sorted(marks["Succeeded"] - marks["created"] for marks in self.marks.values())
        wall = max(finished) - self.started
        return {
            "jobs": len(self.marks),
            "wall_seconds": round(wall, 2),
            "jobs_per_second": round(len(self.marks) / wall, 3),
            "audio_seconds_per_second": round(self.audio_seconds / wall, 2),
            "completion_p50_seconds": round(statistics.median(completion), 2),
            "completion_p99_seconds": round(percentile(completion, 99), 2),
            "completion_max_seconds": round(completion[-1], 2),
        }


def percentile(ordered: list[float], q: int) -> float:
    return statistics.quantiles(ordered, n=100, method="inclusive")[q - 1]


def clips(work: Path, s3: Minio) -> list[tuple[str, float]]:
    """The clips spoken and uploaded under the namespace's prefix: (object key, seconds) of each."""
    words = TEXT.split()
    uploaded = []
    for index, count in enumerate(CLIP_WORDS):
        path = work / f"short-{index}.wav"
        seconds = speak(path, " ".join(words[index * 80 : index * 80 + count]))
        key = f"{NAMESPACE}/short/{index}.wav"
        s3.fput_object(gateway.BUCKET, key, str(path), content_type="audio/wav")
        uploaded.append((key, seconds))
    return uploaded


def job(name: str, key: str, execution: Execution) -> dict[str, Any]:
    spec = {
        "source": {"s3": {"bucket": gateway.BUCKET, "key": key}},
        "model": "tiny.en",
        "outputs": {"formats": ["txt"], "s3": {"bucket": gateway.OUTPUT_BUCKET, "prefix": f"{NAMESPACE}/short/"}},
        "resources": {"gpu": 0},
        "execution": execution,
    }
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TranscriptionJob", "metadata": {"name": name}, "spec": spec}


def side(api: client.ApiClient, uploaded: list[tuple[str, float]], execution: Execution) -> Side:
    """JOBS jobs of the clips in turn, created at once; waits until every one has succeeded, then deletes them."""
    custom = client.CustomObjectsApi(api)
    prefix = execution.lower()
    chosen = [uploaded[index % len(uploaded)] for index in range(JOBS)]
    watcher = JobWatch(api, NAMESPACE)

    def create(body: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)

    watcher.start()
    try:
        time.sleep(1)  # the watch is listening
        started = time.monotonic()
        bodies = [job(f"{prefix}-{index}", key, execution) for index, (key, _) in enumerate(chosen)]
        with ThreadPoolExecutor(CREATE_THREADS) as creators:
            list(creators.map(create, bodies))
        names = [body["metadata"]["name"] for body in bodies]
        gateway.wait_until(
            lambda: all(_ended(watcher.seen.get(name, {})) for name in names),
            f"{JOBS} {execution} jobs to end",
            TIMEOUT_SECONDS,
        )
    finally:
        watcher.stop()
    failed = [name for name in names if "Succeeded" not in watcher.seen[name]]
    if failed:
        raise RuntimeError(f"{len(failed)} {execution} jobs did not succeed, among them {failed[:5]}")
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
    gateway.wait_until(
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"],
        "the jobs to be deleted",
        300,
    )
    return Side(started, {name: watcher.seen[name] for name in names}, sum(seconds for _, seconds in chosen))


def _ended(marks: dict[str, float]) -> bool:
    return "Succeeded" in marks or "Failed" in marks


def measure(cluster: LocalCluster, state: ClusterState, work: Path) -> dict[str, Any]:
    env = {**os.environ, **cluster.env_exports(state)}
    s3 = Minio(cluster.s3_url(state).removeprefix("http://"), state.minio_user, state.minio_password, secure=False)
    gateway.install(cluster, state, env, s3, {"gateway.jobGpus": "0"})  # the operator, the buckets
    api = kube.api_client(cluster.admin_kubeconfig)
    kube.create_namespace(api, NAMESPACE)
    uploaded = clips(work, s3)
    gateway.upgrade(env, POOL_VALUES)
    wait_for_pool(api, POOL)
    pods = side(api, uploaded, "Isolated").summary()
    pooled = side(api, uploaded, "Pooled").summary()
    return {
        "clip_seconds": [round(seconds, 1) for _, seconds in uploaded],
        "running": RUNNING,
        "pods": pods,
        "pooled": pooled,
        "ratio_throughput_pooled_to_pods": round(pooled["jobs_per_second"] / pods["jobs_per_second"], 2),
        "ratio_p50_pooled_to_pods": round(pooled["completion_p50_seconds"] / pods["completion_p50_seconds"], 3),
        "ratio_p99_pooled_to_pods": round(pooled["completion_p99_seconds"] / pods["completion_p99_seconds"], 3),
    }
