"""One bad job never stops the others: a job whose runner the API server refuses fails with the reason, one whose
namespace's quota refuses it waits with a Warning, and the jobs after them run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Kubescribe, scratch_namespace, wait_for
from tests.integration.speech import speak

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def later_namespace(kubescribe: Kubescribe) -> Iterator[str]:
    """A second namespace, listed after the `namespace` fixture's (t-...): its jobs come after theirs in a pass."""
    with scratch_namespace(kubescribe.cluster, "u") as name:
        yield name


def test_jobs_the_api_server_refuses_stop_no_other_job(
    kubescribe: Kubescribe, namespace: str, later_namespace: str, speech_dir: Path
) -> None:
    cluster = kubescribe.cluster
    wav = speak(speech_dir, "fine", SENTENCE)
    kubescribe.upload("audio", f"{namespace}/fine.wav", wav)
    source = {"s3": {"bucket": "audio", "key": f"{namespace}/fine.wav"}}
    # The CRD and the operator take this toleration; the API server refuses it in a Job (Exists takes no value).
    toleration = {"key": "example.com/gpu-pool", "operator": "Exists", "value": "a"}
    kubescribe.submit(namespace, "refused", source=source, resources={"gpu": 0, "tolerations": [toleration]})
    refused = kubescribe.wait_finished(namespace, "refused", timeout=60)["status"]
    assert (refused["phase"], refused["reason"]) == ("Failed", "InvalidSpec"), refused
    assert "the API server refused the runner's Job" in refused["message"]
    assert "tolerations[0]" in refused["message"]

    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-jobs", "namespace": namespace},
            "spec": {"hard": {"count/jobs.batch": "0"}},
        }
    )
    kubescribe.submit(namespace, "blocked", source=source)
    kubescribe.submit_audio(later_namespace, "after", wav, outputs={"formats": ["txt"]})
    after = kubescribe.wait_finished(later_namespace, "after")["status"]
    assert after["phase"] == "Succeeded", after.get("message")
    assert kubescribe.read(after["result"]["outputs"]["txt"]).strip()

    def quota_warning() -> bool:
        events = cluster.get("events", "-n", namespace, "--field-selector", "involvedObject.name=blocked")["items"]
        return any(e["type"] == "Warning" and "exceeded quota" in e["message"] for e in events)

    wait_for(quota_warning, 60, "a Warning that the quota refuses the runner's Job")
    assert kubescribe.job(namespace, "blocked")["status"]["phase"] == "Pending"
    assert cluster.try_get("job", "transcribe-blocked", "-n", namespace) is None
    cluster.kubectl("delete", "resourcequota", "no-jobs", "-n", namespace)
    blocked = kubescribe.wait_finished(namespace, "blocked")["status"]
    assert blocked["phase"] == "Succeeded", blocked.get("message")
