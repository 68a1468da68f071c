"""TranscriptionJobs admitted by Kueue: a ClusterQueue's GPU quota decides when each runner Job runs, a job of
higher priority preempts a running one, which waits and runs again; a job without a LocalQueue is the operator's
own, as before; the gateway's `queue` names the LocalQueue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Cluster, Gateway, Kubescribe, wait_for
from tests.integration.speech import PASSAGE, speak, word_error_rate
from tests.integration.test_kueue import KUEUE_API, QUEUE_LABEL, queues

PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
MAX_WER = 0.3
SHORT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def gpu_queue(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A LocalQueue `gpus` in the test's namespace, whose ClusterQueue holds one GPU and lets a job of higher
    priority preempt one of lower; yields the ClusterQueue's name."""
    quota = [
        {"name": "cpu", "nominalQuota": "16"},
        {"name": "memory", "nominalQuota": "64Gi"},
        {"name": "nvidia.com/gpu", "nominalQuota": "1"},
    ]
    with queues(cluster, namespace, quota, preemption={"withinClusterQueue": "LowerPriority"}) as name:
        yield name


@pytest.fixture(scope="module")
def priorities(cluster: Cluster) -> Iterator[dict[str, str]]:
    """WorkloadPriorityClasses `low` and `high`, by those words."""
    suffix = uuid.uuid4().hex[:8]
    names = {"low": f"low-{suffix}", "high": f"high-{suffix}"}
    cluster.apply(
        *(
            {"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": name}, "value": value}
            for name, value in ((names["low"], 100), (names["high"], 1000))
        )
    )
    yield names
    cluster.kubectl("delete", "workloadpriorityclass", *names.values(), "--wait=false", check=False)


def submit(kubescribe: Kubescribe, namespace: str, name: str, wav: Path, labels: dict[str, str], **spec: Any) -> None:
    key = f"{namespace}/{wav.name}"
    kubescribe.upload("audio", key, wav)
    kubescribe.cluster.apply(
        {
            "apiVersion": "kubescribe.io/v1alpha1",
            "kind": "TranscriptionJob",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"source": {"s3": {"bucket": "audio", "key": key}}, "resources": {"gpu": 1}, **spec},
        }
    )


def runner_jobs(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    """The runner Jobs of the namespace, by the name of their TranscriptionJob."""
    jobs = cluster.get("jobs", "-n", namespace, "-l", "kubescribe.io/job")["items"]
    return {job["metadata"]["labels"]["kubescribe.io/job"]: job for job in jobs}


def finished(job: dict[str, Any]) -> bool:
    conditions = job.get("status", {}).get("conditions", [])
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions)


def workload_of(cluster: Cluster, namespace: str, job: dict[str, Any]) -> dict[str, Any] | None:
    uid = job["metadata"]["uid"]
    for workload in cluster.get("workloads", "-n", namespace)["items"]:
        if any(reference["uid"] == uid for reference in workload["metadata"].get("ownerReferences", [])):
            found: dict[str, Any] = workload
            return found
    return None


def kubescribe_events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.kind=TranscriptionJob,involvedObject.name={name}"
    events: list[dict[str, Any]] = cluster.get("events", "-n", namespace, "--field-selector", selector)["items"]
    return events


def test_two_jobs_on_a_quota_of_one_gpu_run_one_after_the_other(
    kubescribe: Kubescribe, cluster: Cluster, namespace: str, gpu_queue: str, speech_dir: Path
) -> None:
    wav = speak(speech_dir, "short", SHORT)
    names = ("first", "second")
    for name in names:
        submit(kubescribe, namespace, name, wav, {QUEUE_LABEL: "gpus"})

    waiting: dict[str, str] = {}
    tables: list[str] = []

    def both_succeeded() -> bool:
        jobs = runner_jobs(cluster, namespace)
        started = [name for name, job in jobs.items() if not job["spec"]["suspend"] and not finished(job)]
        assert len(started) < 2, "both runner Jobs run at once on a quota of one GPU"
        statuses = {name: (kubescribe.job(namespace, name) or {}).get("status") or {} for name in names}
        pending = {name: s["message"] for name, s in statuses.items() if s.get("reason") == "KueuePending"}
        if pending and not tables:
            tables.append(cluster.kubectl("get", "tj", "-n", namespace).stdout)
        waiting.update(pending)
        return all(status.get("phase") == "Succeeded" for status in statuses.values())

    wait_for(both_succeeded, 300, "both jobs to succeed, one after the other", interval=0.2)

    assert any("insufficient unused quota for nvidia.com/gpu" in message for message in waiting.values()), waiting
    assert all(f"ClusterQueue {gpu_queue}" in message for message in waiting.values())
    [table] = tables
    assert any(line.split()[1:3] == ["Queued", "KueuePending"] for line in table.splitlines()[1:]), table
    jobs = [kubescribe.job(namespace, name) for name in names]
    spans = sorted((job["status"]["startTime"], job["status"]["completionTime"]) for job in jobs if job)
    assert spans[0][1] <= spans[1][0]
    for job in jobs:
        assert job is not None
        admitted = [c for c in job["status"]["conditions"] if c["type"] == "Admitted"]
        assert admitted[0]["reason"] == "KueueAdmitted"
        assert f"ClusterQueue {gpu_queue}" in admitted[0]["message"]
        assert "brown fox" in kubescribe.read(job["status"]["result"]["outputs"]["txt"]).lower()
    for runner_job in runner_jobs(cluster, namespace).values():
        workload = workload_of(cluster, namespace, runner_job)
        assert workload is not None
        assert workload["status"]["admission"]["clusterQueue"] == gpu_queue


def test_a_job_of_higher_priority_preempts_a_running_one_which_then_runs_again(
    kubescribe: Kubescribe,
    cluster: Cluster,
    namespace: str,
    gpu_queue: str,
    priorities: dict[str, str],
    speech_dir: Path,
) -> None:
    long_wav = speak(speech_dir, "long", PASSAGE, repeat=4)
    submit(
        kubescribe,
        namespace,
        "low",
        long_wav,
        {QUEUE_LABEL: "gpus", PRIORITY_LABEL: priorities["low"]},
        options={"vad": False},
    )
    wait_for(
        lambda: (kubescribe.job(namespace, "low") or {}).get("status", {}).get("phase") == "Running",
        120,
        "the low-priority job to run",
    )

    submit(
        kubescribe,
        namespace,
        "high",
        speak(speech_dir, "short", SHORT),
        {QUEUE_LABEL: "gpus", PRIORITY_LABEL: priorities["high"]},
    )

    def evicted() -> dict[str, Any] | None:
        status = (kubescribe.job(namespace, "low") or {}).get("status") or {}
        return status if status.get("reason") == "KueueEvicted" else None

    status = wait_for(evicted, 120, "the low-priority job to be preempted")
    assert status["phase"] == "Queued"
    assert "Preempted" in status["message"]
    assert not runner_jobs(cluster, namespace)["low"]["status"].get("active")

    high = kubescribe.wait_finished(namespace, "high", timeout=300)
    low = kubescribe.wait_finished(namespace, "low", timeout=600)
    assert high["status"]["phase"] == "Succeeded"
    assert low["status"]["phase"] == "Succeeded", low["status"]
    assert not runner_jobs(cluster, namespace)["low"]["status"].get("failed")  # not counted against backoffLimit
    assert "KueueEvicted" in {event["reason"] for event in kubescribe_events(cluster, namespace, "low")}
    assert high["status"]["completionTime"] <= low["status"]["completionTime"]
    transcript = kubescribe.read(low["status"]["result"]["outputs"]["txt"])
    assert word_error_rate(" ".join([PASSAGE] * 4), transcript) < MAX_WER, transcript  # all of it, once


def test_a_job_without_a_local_queue_is_the_operators_own(
    kubescribe: Kubescribe, cluster: Cluster, namespace: str, gpu_queue: str, speech_dir: Path
) -> None:
    submit(kubescribe, namespace, "plain", speak(speech_dir, "short", SHORT), {})
    job = kubescribe.wait_finished(namespace, "plain")
    assert job["status"]["phase"] == "Succeeded"
    admitted = [c for c in job["status"]["conditions"] if c["type"] == "Admitted"]
    assert admitted[0]["reason"] == "Admitted"
    runner_job = runner_jobs(cluster, namespace)["plain"]
    assert QUEUE_LABEL not in runner_job["metadata"]["labels"]
    assert workload_of(cluster, namespace, runner_job) is None


def test_a_job_sent_to_the_gateway_with_a_queue_is_admitted_by_kueue(
    gateway: Gateway, kubescribe: Kubescribe, namespace: str, gpu_queue: str, speech_dir: Path
) -> None:
    key = gateway.create_key(namespace, "queued")
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    wait_for(lambda: client.get("/v1/models").status_code == 200, 30, "the new key to be read")
    with speak(speech_dir, "short", SHORT).open("rb") as audio:
        response = client.post("/v1/jobs", files={"file": ("short.wav", audio)}, data={"queue": "gpus"})
    assert response.status_code == 202, response.text
    job = kubescribe.wait_finished(namespace, response.json()["id"])
    assert job["metadata"]["labels"][QUEUE_LABEL] == "gpus"
    assert job["status"]["phase"] == "Succeeded"
    admitted = [c for c in job["status"]["conditions"] if c["type"] == "Admitted"]
    assert admitted[0]["reason"] == "KueueAdmitted"
    assert f"ClusterQueue {gpu_queue}" in admitted[0]["message"]
