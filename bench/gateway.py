"""The REST gateway: upload throughput against a direct S3 PUT of the same file to the same MinIO, the gateway's
memory while it takes the upload, job lookups per second against its cheapest endpoint, and a batch of 1,000
sources against as many jobs created one by one (bench/batch.py)."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from minio import Minio

from bench import batch, kube
from bench.speech import wav_duration
from kubescribe.gateway.access.keys import create_key
from kubescribe.gateway.stores.objects import PART_SIZE
from localcluster.cluster import ClusterState, LocalCluster, free_port

ROUNDS = 3
BUCKET = "audio"
OUTPUT_BUCKET = "transcripts"
"""The operator's default output bucket: its finalizer looks there for transcripts to delete."""
DIRECT_KEY = "bench/direct-put.wav"
NAMESPACE = "bench-gateway"
KEYS_SECRET = "kubescribe-api-keys"  # noqa: S105 - a name
SAMPLE_SECONDS = 0.05
LOAD_SECONDS = 10.0
LOAD_THREADS = 8
RATE = 1_000_000
JOB_GPUS = 8
"""No node has 8 GPUs: the runner pod of an uploaded job is never scheduled, so nothing transcribes it."""
SAMPLE_RATE, CHANNELS, FRAME_BYTES = 48_000, 2, 4
SPOKEN = "This is a long benchmark recording. What follows is silence."
MIB = 1 << 20


def helm_values(upload_bytes: int) -> dict[str, str]:
    return {
        "gateway.maxUploadBytes": str(upload_bytes + (1 << 30)),
        "gateway.rateLimit.perSecond": str(RATE),
        "gateway.rateLimit.burst": str(RATE),
        "gateway.jobGpus": str(JOB_GPUS),
        "gateway.maxQueuedJobsPerNamespace": str(batch.FILES + 10),
    }


def audio_file(path: Path, size: int) -> Path:
    """A WAV of about `size` bytes, 48 kHz stereo 16-bit: a spoken sentence, then silence."""
    speech = path.with_suffix(".speech.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(speech), SPOKEN], check=True)
    padding = size // FRAME_BYTES - round(wav_duration(speech) * SAMPLE_RATE)
    effects = ["channels", str(CHANNELS), "rate", str(SAMPLE_RATE), "pad", "0", f"{padding}s"]
    subprocess.run(["sox", str(speech), "-b", "16", str(path), *effects], check=True)
    speech.unlink()
    return path


@dataclass
class Gateway:
    url: str
    key: str
    pid: int
    values: dict[str, str]

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(600, connect=10))


def install(
    cluster: LocalCluster, state: ClusterState, env: dict[str, str], s3: Minio, chart_values: dict[str, str]
) -> Gateway:
    """The chart's gateway with `chart_values`, on a free port, with a key for NAMESPACE; the operator is installed
    first if it is not."""
    for bucket in (BUCKET, OUTPUT_BUCKET):
        if not s3.bucket_exists(bucket):
            s3.make_bucket(bucket)
    status = ["helm", "status", kube.RELEASE, "-n", kube.OPERATOR_NAMESPACE]
    if subprocess.run(status, env=env, capture_output=True, check=False).returncode != 0:
        kube.install_operator(cluster, state, env)
    api = kube.api_client(cluster.admin_kubeconfig)
    core = client.CoreV1Api(api)
    if not core.list_namespace(field_selector=f"metadata.name={NAMESPACE}").items:
        kube.create_namespace(api, NAMESPACE)
    key = create_key(core, kube.OPERATOR_NAMESPACE, KEYS_SECRET, NAMESPACE, "bench")
    values = {"gateway.port": str(free_port()), **chart_values}
    upgrade(env, values)
    deployment = f"deployment/{kube.RELEASE}-gateway"
    kube.run(env, "kubectl", "-n", kube.OPERATOR_NAMESPACE, "rollout", "status", deployment, "--timeout=2m")
    gateway = Gateway(f"http://127.0.0.1:{values['gateway.port']}", key, 0, values)
    with gateway.client() as http:
        wait_until(lambda: http.get("/readyz").status_code == 200, "the gateway to be ready")
        wait_until(lambda: http.get("/v1/jobs").status_code == 200, "the gateway to accept the key")
    gateway.pid = running_pid(core)
    return gateway


def upgrade(env: dict[str, str], chart_values: dict[str, str]) -> None:
    """The release again, with `chart_values` over those it has."""
    sets = [arg for name, value in chart_values.items() for arg in ("--set", f"{name}={value}")]
    chart = str(kube.REPO / "charts/kubescribe")
    kube.run(env, "helm", "upgrade", kube.RELEASE, chart, "-n", kube.OPERATOR_NAMESPACE, "--reuse-values", *sets)


def pool_values(name: str, namespace: str, concurrency: int) -> dict[str, str]:
    """The chart values of one runner pool, `name`: one warm tiny.en worker for `namespace`."""
    return {
        "pools[0].name": name,
        "pools[0].model": "tiny.en",
        "pools[0].namespaces[0]": namespace,
        "pools[0].concurrency": str(concurrency),
        "pools[0].replicas.min": "1",
        "pools[0].replicas.max": "1",
    }


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def running_pid(core: client.CoreV1Api) -> int:
    """The gateway's process: the node agent runs a container as a host process, its pid in the containerID."""
    pods = core.list_namespaced_pod(kube.OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/component=gateway")
    running = [
        status.container_id
        for pod in pods.items
        if pod.metadata.deletion_timestamp is None
        for status in pod.status.container_statuses or []
        if status.state.running
    ]
    if len(running) != 1:
        raise RuntimeError(f"expected one running gateway container, found {len(running)}")
    return int(running[0].rpartition("://")[2])


def process_tree(pid: int) -> list[int]:
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            pids += [int(child) for child in children]
        index += 1
    return pids


def memory(pid: int, field: str = "VmRSS") -> int:
    """`field` of /proc/<pid>/status in bytes, summed over the process and its descendants."""
    total = 0
    for each in process_tree(pid):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1]) * 1024
    return total


class PeakRss(threading.Thread):
    """Samples the RSS of a process tree every SAMPLE_SECONDS until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, memory(pid), 1
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, memory(self.pid))
            self.samples += 1

    def __enter__(self) -> PeakRss:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self.join()


def direct_put(s3: Minio, path: Path) -> float:
    """Seconds for minio's fput_object, with the part size and the single part stream the gateway uses."""
    started = time.monotonic()
    s3.fput_object(BUCKET, DIRECT_KEY, str(path), part_size=PART_SIZE, num_parallel_uploads=1)
    elapsed = time.monotonic() - started
    s3.remove_object(BUCKET, DIRECT_KEY)
    return elapsed


def submit(http: httpx.Client, path: Path) -> tuple[float, dict[str, Any]]:
    """POST /v1/jobs with the file streamed from disk (httpx reads a file field 64 KiB at a time); the seconds
    until the 202 answer and the job."""
    with path.open("rb") as file:
        started = time.monotonic()
        response = http.post("/v1/jobs", files={"file": (path.name, file, "audio/wav")}, data={"formats": "txt"})
        elapsed = time.monotonic() - started
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/jobs answered {response.status_code}: {response.text[:500]}")
    job: dict[str, Any] = response.json()
    return elapsed, job


def delete(http: httpx.Client, job_id: str) -> None:
    """DELETE the job and wait until it is gone (the operator's finalizer deletes the uploaded audio first)."""
    response = http.delete(f"/v1/jobs/{job_id}")
    if response.status_code != 202:
        raise RuntimeError(f"DELETE /v1/jobs/{job_id} answered {response.status_code}: {response.text[:500]}")
    wait_until(lambda: http.get(f"/v1/jobs/{job_id}").status_code == 404, f"job {job_id} to be deleted", 300)


def upload(gateway: Gateway, s3: Minio, path: Path) -> dict[str, Any]:
    """ROUNDS of each side, alternating direct and gateway, with the gateway's RSS sampled during its uploads."""
    size = path.stat().st_size
    direct: list[float] = []
    through: list[float] = []
    rounds: list[dict[str, Any]] = []
    hwm_before = memory(gateway.pid, "VmHWM")
    baseline = memory(gateway.pid)
    with gateway.client() as http:
        for _ in range(ROUNDS):
            direct.append(direct_put(s3, path))
            before = memory(gateway.pid)
            with PeakRss(gateway.pid) as sampler:
                seconds, job = submit(http, path)
            after = memory(gateway.pid)
            through.append(seconds)
            delete(http, job["id"])
            rounds.append(
                {
                    "rss_before_mib": mib(before),
                    "rss_peak_mib": mib(sampler.peak),
                    "rss_after_mib": mib(after),
                    "growth_mib": mib(sampler.peak - before),
                    "samples": sampler.samples,
                }
            )
    peak = max(round_["rss_peak_mib"] for round_ in rounds)
    direct_rate = statistics.median(size / MIB / s for s in direct)
    gateway_rate = statistics.median(size / MIB / s for s in through)
    return {
        "bytes": size,
        "rounds": ROUNDS,
        "part_size_bytes": PART_SIZE,
        "direct_seconds": [round(s, 3) for s in direct],
        "gateway_seconds": [round(s, 3) for s in through],
        "direct_mib_per_second": round(direct_rate, 1),
        "gateway_mib_per_second": round(gateway_rate, 1),
        "ratio_gateway_to_direct": round(gateway_rate / direct_rate, 3),
        "rss": {
            "baseline_mib": mib(baseline),
            "peak_mib": peak,
            "growth_mib": round(peak - mib(baseline), 1),
            "hwm_before_mib": mib(hwm_before),
            "hwm_after_mib": mib(memory(gateway.pid, "VmHWM")),
            "sample_seconds": SAMPLE_SECONDS,
            "each_round": rounds,
        },
    }


def mib(value: int) -> float:
    return round(value / MIB, 1)


def load(gateway: Gateway, path: str, seconds: float = LOAD_SECONDS, threads: int = LOAD_THREADS) -> dict[str, Any]:
    """`threads` clients, each with its own keep-alive connection, GET `path` back to back for `seconds`."""
    deadline = time.monotonic() + seconds

    def client_loop() -> tuple[list[float], Counter[int]]:
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        with gateway.client() as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status = http.get(path).status_code
                latencies.append(time.perf_counter() - started)
                statuses[status] += 1
        return latencies, statuses

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: client_loop(), range(threads)))
    elapsed = time.monotonic() - started
    latencies = sorted(latency for each, _ in results for latency in each)
    statuses = sum((counts for _, counts in results), Counter[int]())
    centiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(centiles[49] * 1000, 2),
        "p99_ms": round(centiles[98] * 1000, 2),
        "non_200": {str(status): count for status, count in statuses.items() if status != 200},
    }


def lookups(gateway: Gateway, sample: Path) -> dict[str, Any]:
    """GET /healthz, then GET /v1/jobs/{id} of one small job that stays pending, under the same load."""
    with gateway.client() as http:
        _, job = submit(http, sample)
        try:
            health = load(gateway, "/healthz")
            lookup = load(gateway, f"/v1/jobs/{job['id']}")
            phase = http.get(f"/v1/jobs/{job['id']}").json()["phase"]
        finally:
            delete(http, job["id"])
    return {
        "threads": LOAD_THREADS,
        "healthz": health,
        "job": lookup,
        "job_phase": phase,
        "ratio_job_to_healthz": round(lookup["requests_per_second"] / health["requests_per_second"], 3),
    }


def measure(cluster: LocalCluster, state: ClusterState, work: Path, upload_bytes: int) -> dict[str, Any]:
    env = {**os.environ, **cluster.env_exports(state)}
    s3 = Minio(cluster.s3_url(state).removeprefix("http://"), state.minio_user, state.minio_password, secure=False)
    path, sample = work / "gateway-upload.wav", work / "gateway-small.wav"
    try:
        audio_file(path, upload_bytes)
        audio_file(sample, 1 * MIB)
        gateway = install(cluster, state, env, s3, helm_values(upload_bytes))
        target = batch.Target(gateway.client, NAMESPACE, BUCKET, JOB_GPUS)
        return {
            "upload": upload(gateway, s3, path),
            "lookups": lookups(gateway, sample),
            "batch": batch.measure(target, env, kube.api_client(cluster.admin_kubeconfig)),
            "audio_seconds": round(wav_duration(path), 1),
            "helm_values": gateway.values,
        }
    finally:
        path.unlink(missing_ok=True)
        sample.unlink(missing_ok=True)
