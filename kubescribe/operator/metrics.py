"""The operator's Prometheus metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter as CounterMetric
from prometheus_client import Gauge, Histogram

from kubescribe.api.timestamps import parse_timestamp
from kubescribe.api.v1alpha1 import PHASES
from kubescribe.operator.queue import AdmissionPlan

jobs = Gauge("kubescribe_jobs", "TranscriptionJobs by phase.", ["phase"])
queue_depth = Gauge("kubescribe_queue_depth", "TranscriptionJobs waiting for admission.")
jobs_waiting = Gauge(
    "kubescribe_jobs_waiting",
    "Queued TranscriptionJobs by namespace, queue (the Kueue LocalQueue; empty: the operator's own) and reason.",
    ["namespace", "queue", "reason"],
)
gpus_admitted = Gauge("kubescribe_gpus_admitted", "GPUs of admitted, unfinished jobs, by namespace.", ["namespace"])
job_duration = Histogram(
    "kubescribe_job_duration_seconds",
    "From start to finish of a job.",
    ["phase"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
audio_seconds = Histogram(
    "kubescribe_audio_seconds",
    "Duration of the audio of succeeded jobs.",
    buckets=(10, 30, 60, 300, 600, 1800, 3600, 7200),
)
reconcile_errors = CounterMetric("kubescribe_reconcile_errors", "Reconcile passes that failed.")


def observe_pass(
    transcription_jobs: Sequence[Mapping[str, Any]], plan: AdmissionPlan, queues: Mapping[tuple[str, str], str]
) -> None:
    """Gauges of the jobs as the pass found them; `queues` holds the LocalQueue of each job that is Kueue's."""
    phases = Counter((tj.get("status") or {}).get("phase") or "Pending" for tj in transcription_jobs)
    for phase in PHASES:
        jobs.labels(phase).set(phases[phase])
    queue_depth.set(len(plan.positions))
    waiting: Counter[tuple[str, str, str]] = Counter()
    for tj in transcription_jobs:
        status = tj.get("status") or {}
        if status.get("phase") == "Queued":
            namespace = tj["metadata"]["namespace"]
            waiting[namespace, queues.get((namespace, tj["metadata"]["name"]), ""), status.get("reason") or ""] += 1
    jobs_waiting.clear()
    for labels, count in waiting.items():
        jobs_waiting.labels(*labels).set(count)
    gpus: Counter[str] = Counter()
    for tj in transcription_jobs:
        status = tj.get("status") or {}
        if status.get("phase") in ("Pending", "Running") and status.get("jobName"):
            gpus[tj["metadata"]["namespace"]] += tj["spec"].get("resources", {}).get("gpu", 0)
    gpus_admitted.clear()
    for namespace, count in gpus.items():
        gpus_admitted.labels(namespace).set(count)


def observe_finished(status: Mapping[str, Any]) -> None:
    if status.get("startTime") and status.get("completionTime"):
        elapsed = parse_timestamp(status["completionTime"]) - parse_timestamp(status["startTime"])
        job_duration.labels(status["phase"]).observe(elapsed.total_seconds())
    duration = (status.get("result") or {}).get("durationSeconds")
    if status.get("phase") == "Succeeded" and duration:
        audio_seconds.observe(duration)
