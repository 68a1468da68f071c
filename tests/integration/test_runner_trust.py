"""What a runner's ServiceAccount writes into its job's status is not believed: a forged finish while the runner
still runs is undone, holds the running slot all the same, and names no object the gateway would serve."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client as client_api
from kubernetes import config

from tests.integration.conftest import Gateway, Kubescribe, wait_for
from tests.integration.speech import PASSAGE, speak, word_error_rate

SHORT = "The quick brown fox jumps over the lazy dog."
SECRET_TRANSCRIPT = b"the minutes of another team's meeting"


@pytest.fixture(scope="module")
def one_at_a_time(gateway: Gateway, kubescribe: Kubescribe) -> Iterator[Kubescribe]:
    """A cluster-wide limit of one running job, on the install the gateway's settings are part of."""
    kubescribe.install(**{"operator.maxRunningJobs": "1"})
    yield kubescribe
    kubescribe.install()


def phase(kubescribe: Kubescribe, namespace: str, name: str) -> str | None:
    return ((kubescribe.job(namespace, name) or {}).get("status") or {}).get("phase")


def runner_running(kubescribe: Kubescribe, namespace: str, name: str) -> bool:
    return any(pod["status"].get("phase") == "Running" for pod in kubescribe.runner_pods(namespace, name))


def test_a_forged_finish_is_undone_keeps_its_slot_and_serves_nothing_foreign(
    one_at_a_time: Kubescribe, gateway: Gateway, namespace: str, speech_dir: Path
) -> None:
    kubescribe = one_at_a_time
    key = gateway.create_key(namespace, "forgery")
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    wait_for(lambda: client.get("/v1/jobs").status_code == 200, 30, "the gateway to accept the new key")
    foreign_key = f"other-{namespace}/tj-theirs000000/audio.txt"
    kubescribe.s3.put_object("transcripts", foreign_key, io.BytesIO(SECRET_TRANSCRIPT), len(SECRET_TRANSCRIPT))

    with speak(speech_dir, "long", PASSAGE, repeat=4).open("rb") as audio:
        submitted = client.post(
            "/v1/jobs", files={"file": ("long.wav", audio)}, data={"vad": "false", "formats": "txt"}
        )
    assert submitted.status_code == 202, submitted.text
    forger = submitted.json()["id"]
    wait_for(lambda: runner_running(kubescribe, namespace, forger), 60, "the runner to run")
    kubescribe.upload("audio", f"{namespace}/short.wav", speak(speech_dir, "short", SHORT))
    kubescribe.submit(namespace, "next", source={"s3": {"bucket": "audio", "key": f"{namespace}/short.wav"}})
    wait_for(lambda: phase(kubescribe, namespace, "next") == "Queued", 30, "the next job to queue")

    forged = {
        "status": {
            "phase": "Succeeded",
            "reason": "Completed",
            "result": {"outputs": {"txt": f"s3://transcripts/{foreign_key}"}},
        }
    }
    # As the runner's ServiceAccount, which may patch its job's status (kubectl patch would read it first).
    runner = config.new_client_from_config(str(kubescribe.cluster.local.admin_kubeconfig))
    runner.set_default_header("Impersonate-User", f"system:serviceaccount:{namespace}:transcribe-{forger}")
    client_api.CustomObjectsApi(runner).patch_namespaced_custom_object_status(
        "kubescribe.io",
        "v1alpha1",
        namespace,
        "transcriptionjobs",
        forger,
        forged,
        _content_type="application/merge-patch+json",
    )
    refused = client.get(f"/v1/jobs/{forger}/transcript", params={"format": "txt"})
    assert refused.status_code in (404, 409), refused.text
    assert SECRET_TRANSCRIPT.decode() not in refused.text

    wait_for(lambda: phase(kubescribe, namespace, forger) == "Running", 30, "the forged finish to be undone")
    assert runner_running(kubescribe, namespace, forger)
    assert phase(kubescribe, namespace, "next") == "Queued"

    done = kubescribe.wait_finished(namespace, forger, timeout=300)["status"]
    assert (done["phase"], done["reason"]) == ("Succeeded", "Completed")
    assert done["result"]["outputs"] == {"txt": f"s3://transcripts/{namespace}/{forger}/audio.txt"}
    after = kubescribe.wait_finished(namespace, "next", timeout=300)["status"]
    assert after["phase"] == "Succeeded"
    assert after["startTime"] >= done["completionTime"]  # never two at once

    served = client.get(f"/v1/jobs/{forger}/transcript", params={"format": "txt"})
    assert served.status_code == 200, served.text
    assert word_error_rate(" ".join([PASSAGE] * 4), served.text) < 0.3
