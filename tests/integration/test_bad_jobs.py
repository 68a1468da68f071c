"""One bad job never stops the others: a job whose runner the API server refuses as invalid fails with the reason,
one whose namespace's quota refuses it waits with a Warning, and the jobs after them run."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.utils import parse_quantity

from tests.integration.conftest import Kubescribe, scratch_namespace, wait_for
from tests.integration.speech import speak

SENTENCE = "The quick brown fox jumps over the lazy dog."
TOLERATIONS_REFUSED = "this cluster's Jobs may not carry tolerations here"


@pytest.fixture
def later_namespace(kubescribe: Kubescribe) -> Iterator[str]:
    """A second namespace, listed after the `namespace` fixture's (t-...): its jobs come after theirs in a pass."""
    with scratch_namespace(kubescribe.cluster, "u") as name:
        yield name


@pytest.fixture
def tolerations_refused(kubescribe: Kubescribe, namespace: str) -> Iterator[None]:
    """A cluster policy of the kind administrators write: Jobs with tolerations are invalid in `namespace`."""
    cluster = kubescribe.cluster
    name = f"no-tolerations-{namespace}"
    cluster.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.spec.template.spec.tolerations)",
                        "message": TOLERATIONS_REFUSED,
                        "reason": "Invalid",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            },
        },
    )
    probe = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"template": cluster.pod_template("pass", tolerations=[{"operator": "Exists"}])},
    }

    def refusing() -> bool:
        dry_run = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False)
        return TOLERATIONS_REFUSED in dry_run.stderr

    wait_for(refusing, 30, "the cluster's policy to apply")
    yield
    cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False)


@pytest.mark.usefixtures("tolerations_refused")
def test_jobs_the_api_server_refuses_stop_no_other_job(
    kubescribe: Kubescribe, namespace: str, later_namespace: str, speech_dir: Path
) -> None:
    cluster = kubescribe.cluster
    wav = speak(speech_dir, "fine", SENTENCE)
    kubescribe.upload("audio", f"{namespace}/fine.wav", wav)
    source = {"s3": {"bucket": "audio", "key": f"{namespace}/fine.wav"}}
    # A toleration the CRD and the operator take, in a namespace whose Jobs the cluster's own policy refuses.
    toleration = {"key": "example.com/gpu-pool", "operator": "Exists"}
    kubescribe.submit(namespace, "refused", source=source, resources={"gpu": 0, "tolerations": [toleration]})
    refused = kubescribe.wait_finished(namespace, "refused", timeout=60)["status"]
    assert (refused["phase"], refused["reason"]) == ("Failed", "InvalidSpec"), refused
    assert "the API server refused the runner's Job" in refused["message"]
    assert TOLERATIONS_REFUSED in refused["message"]

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


def test_a_source_beyond_the_runners_limits_fails_at_once_with_the_reason(
    kubescribe: Kubescribe, namespace: str, tmp_path: Path
) -> None:
    large = tmp_path / "large.wav"
    large.write_bytes(os.urandom(kubescribe.max_source_bytes + (1 << 20)))
    kubescribe.submit_audio(namespace, "too-large", large)
    # A FLAC of silence a minute longer than the limit: a few hundred kB that decode to far more.
    long = tmp_path / "long.flac"
    silence = ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono"]
    subprocess.run([*silence, "-t", str(kubescribe.max_duration_seconds + 60), "-c:a", "flac", str(long)], check=True)
    kubescribe.upload("audio", f"{namespace}/long.flac", long)
    kubescribe.submit(namespace, "too-long", source={"s3": {"bucket": "audio", "key": f"{namespace}/long.flac"}})

    for name, reason, says in (
        ("too-large", "SourceTooLarge", "is 33.0 MiB, more than 32.0 MiB, the largest source this cluster takes"),
        ("too-long", "AudioTooLong", f"than {kubescribe.max_duration_seconds} s, the longest this cluster transcribes"),
    ):
        status = kubescribe.wait_finished(namespace, name)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", reason), status
        assert says in status["message"]
        assert len(kubescribe.runner_pods(namespace, name)) == 1

    [runner] = kubescribe.runner_pods(namespace, "too-long")
    [container] = runner["spec"]["containers"]
    decoded_cap = kubescribe.max_duration_seconds * 16000 * 4  # the float32 samples of the longest audio
    assert parse_quantity(container["resources"]["limits"]["memory"]) > decoded_cap
    empty_dirs = [volume for volume in runner["spec"]["volumes"] if "emptyDir" in volume]
    size_limits = {volume["name"]: parse_quantity(volume["emptyDir"]["sizeLimit"]) for volume in empty_dirs}
    assert set(size_limits) == {"work", "model-cache", "tmp"}
    assert size_limits["work"] > kubescribe.max_source_bytes
    assert size_limits["model-cache"] > 4 << 30  # models.maxBytes
    assert size_limits["tmp"] > 0
