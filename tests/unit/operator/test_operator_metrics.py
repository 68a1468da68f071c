"""The operator's gauge of waiting jobs, as Prometheus serves it."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from kubescribe.operator import metrics
from kubescribe.operator.queue import AdmissionPlan


def tj(namespace: str, name: str, phase: str, reason: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {},
        "status": {"phase": phase, "reason": reason},
    }


def waiting(namespace: str, queue: str, reason: str) -> float | None:
    labels = {"namespace": namespace, "queue": queue, "reason": reason}
    return REGISTRY.get_sample_value("kubescribe_jobs_waiting", labels)


def test_waiting_jobs_are_counted_by_namespace_queue_and_reason() -> None:
    jobs = [
        tj("team-a", "one", "Queued", "Queued"),
        tj("team-a", "two", "Queued", "Queued"),
        tj("team-a", "three", "Queued", "KueuePending"),
        tj("team-b", "four", "Queued", "KueueEvicted"),
        tj("team-b", "five", "Running", "PodRunning"),
    ]
    queues = {("team-a", "three"): "gpus", ("team-b", "four"): "gpus", ("team-b", "five"): "gpus"}
    metrics.observe_pass(jobs, AdmissionPlan(), queues)
    assert waiting("team-a", "", "Queued") == 2
    assert waiting("team-a", "gpus", "KueuePending") == 1
    assert waiting("team-b", "gpus", "KueueEvicted") == 1
    assert waiting("team-b", "gpus", "PodRunning") is None

    metrics.observe_pass(jobs[4:], AdmissionPlan(), queues)
    assert waiting("team-a", "", "Queued") is None
