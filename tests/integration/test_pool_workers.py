"""A runner pool with its real workers, from the runner's image, as the chart runs them: jobs of the namespaces it
serves transcribe there, the OpenAI client's request among them, and a worker killed mid-job costs the job one more
attempt, never its result."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from localcluster.cluster import free_port
from tests.integration.conftest import Cluster, Gateway, Kubescribe, running_pid, scratch_namespace, wait_for
from tests.integration.speech import PASSAGE, speak, word_error_rate

POOL = "warm"
SENTENCE = "The warm worker keeps its model loaded and answers many requests."
MAX_WER = 0.3


@pytest.fixture(scope="module")
def served(cluster: Cluster, gateway: Gateway) -> Iterator[tuple[str, str]]:
    """Two namespaces the pool serves: one of its own, and the gateway's gw-b."""
    with scratch_namespace(cluster, "pool") as name:
        yield name, "gw-b"


@pytest.fixture(scope="module")
def pool(kubescribe: Kubescribe, cluster: Cluster, served: tuple[str, str]) -> Iterator[None]:
    """The release with one pool of one worker for tiny.en, serving `served`; restored after the module."""
    values = {
        "pools[0].name": POOL,
        "pools[0].model": "tiny.en",
        "pools[0].namespaces[0]": served[0],
        "pools[0].namespaces[1]": served[1],
        "pools[0].concurrency": "2",
        "pools[0].replicas.min": "1",
        "pools[0].replicas.max": "1",
        "workers.port": str(free_port()),
    }
    kubescribe.install(**values)
    try:
        # The operator restarted by the install may roll the workers out once more: one worker, and only one.
        wait_for(
            lambda: kubescribe.ready_workers(POOL) == 1 and len(kubescribe.worker_pods(POOL)) == 1,
            180,
            "the pool's one worker to load its model",
        )
        yield
    finally:
        kubescribe.install()
        wait_for(lambda: not kubescribe.worker_pods(POOL), 120, "the pool's workers to be gone")


def claimed(cluster: Cluster, kubescribe: Kubescribe) -> list[tuple[str, str, int]]:
    """(namespace, job, attempt) of each assignment the pool's workers logged as claimed, in every run of each."""
    lines = []
    for pod in kubescribe.worker_pods(POOL):
        for previous in (False, True):
            logs = cluster.kubectl(
                "logs",
                pod["metadata"]["name"],
                "-n",
                kubescribe.namespace,
                *(["--previous"] if previous else []),
                check=False,
            )
            lines += logs.stdout.splitlines() if logs.returncode == 0 else []
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [(r["jobNamespace"], r["job"], r["attempt"]) for r in records if r.get("message") == "claimed"]


def test_jobs_of_both_served_namespaces_transcribe_in_the_pool(
    pool: None, kubescribe: Kubescribe, cluster: Cluster, served: tuple[str, str], speech_dir: Path
) -> None:
    wav = speak(speech_dir, "warm", SENTENCE)
    for namespace in served:
        kubescribe.submit_audio(namespace, "warm", wav, outputs={"formats": ["txt"]})
    for namespace in served:
        status = kubescribe.wait_finished(namespace, "warm")["status"]
        assert (status["phase"], status["pool"], status["attempts"]) == ("Succeeded", POOL, 1), status
        [transcript] = status["result"]["outputs"].values()
        assert word_error_rate(SENTENCE, kubescribe.read(transcript)) < MAX_WER
        assert cluster.try_get("job", "transcribe-warm", "-n", namespace) is None
        assert kubescribe.runner_pods(namespace, "warm") == []
    assert {(namespace, "warm", 1) for namespace in served} <= set(claimed(cluster, kubescribe))


def test_a_namespace_the_pool_does_not_serve_gets_a_pod(
    pool: None, kubescribe: Kubescribe, cluster: Cluster, namespace: str, speech_dir: Path
) -> None:
    kubescribe.submit_audio(namespace, "cold", speak(speech_dir, "warm", SENTENCE), outputs={"formats": ["txt"]})
    status = kubescribe.wait_finished(namespace, "cold")["status"]
    assert status["phase"] == "Succeeded"
    assert status.get("pool") is None
    assert (namespace, "cold", 1) not in claimed(cluster, kubescribe)


def test_the_openai_client_gets_its_transcript_through_the_pool(
    pool: None, gateway: Gateway, kubescribe: Kubescribe, cluster: Cluster, speech_dir: Path
) -> None:
    before = claimed(cluster, kubescribe)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.keys["gw-b"], max_retries=0, timeout=240)
    with speak(speech_dir, "warm", SENTENCE).open("rb") as file:
        text = client.audio.transcriptions.create(file=file, model="whisper-1").text
    assert word_error_rate(SENTENCE, text) < MAX_WER
    assert [entry[0] for entry in claimed(cluster, kubescribe) if entry not in before] == ["gw-b"]


def test_a_worker_killed_mid_job_costs_the_job_an_attempt_not_its_result(
    pool: None, kubescribe: Kubescribe, cluster: Cluster, served: tuple[str, str], speech_dir: Path
) -> None:
    namespace = served[0]
    wav = speak(speech_dir, "passage-thrice", PASSAGE, repeat=3)
    kubescribe.submit_audio(namespace, "killed", wav, outputs={"formats": ["txt"]})

    def running() -> bool:
        status = (kubescribe.job(namespace, "killed") or {}).get("status") or {}
        return status.get("reason") == "WorkerRunning"

    wait_for(running, 120, "the worker to run the job")
    assignment = kubescribe.job(namespace, "killed")["status"]["assignment"]  # type: ignore[index]
    holder = cluster.get("lease", assignment, "-n", kubescribe.namespace)["spec"]["holderIdentity"]
    pid = running_pid(cluster.get("pod", holder, "-n", kubescribe.namespace))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    status = kubescribe.wait_finished(namespace, "killed", timeout=300)["status"]
    assert (status["phase"], status["attempts"]) == ("Succeeded", 2), status
    [transcript] = status["result"]["outputs"].values()
    assert word_error_rate(" ".join([PASSAGE] * 3), kubescribe.read(transcript)) < MAX_WER
    assert "Retrying" in kubescribe.warnings(namespace, "killed")
    attempts = [attempt for ns, job, attempt in claimed(cluster, kubescribe) if (ns, job) == (namespace, "killed")]
    assert sorted(attempts) == [1, 2]
