"""A namespace's jobs read and write only their own prefix of the store, what grants add, and allowed models: the
API server refuses other jobs at apply, and where its policy is missing the operator refuses them before anything
is read or written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Cluster, Kubescribe, wait_for
from tests.integration.speech import speak

POLICY = "kubescribe-storage"
SENTENCE = "This recording belongs to another team."


def as_tenant(cluster: Cluster, namespace: str) -> str:
    """A ServiceAccount of `namespace` that may create and read TranscriptionJobs there, and nothing else."""
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant", "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "tenant", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": ["kubescribe.io"],
                    "resources": ["transcriptionjobs"],
                    "verbs": ["create", "get", "list", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tenant", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
        },
    )
    return f"system:serviceaccount:{namespace}:tenant"


def job(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"resources": {"gpu": 0}, "outputs": {"formats": ["txt"]}, **spec},
    }


def create(cluster: Cluster, body: dict[str, Any], *, user: str | None = None, dry_run: bool = False) -> Any:
    args = ["create", "-f", "-", *(["--as", user] if user else []), *(["--dry-run=server"] if dry_run else [])]
    return cluster.kubectl(*args, input=json.dumps(body), check=False)


@pytest.fixture
def victim(kubescribe: Kubescribe, speech_dir: Path) -> str:
    """Another namespace's gateway upload, in the store: the key a thief names."""
    key = f"victim-{uuid.uuid4().hex[:6]}/uploads/tj-secret/audio"
    kubescribe.upload("audio", key, speak(speech_dir, "victim", SENTENCE))
    return key


def test_a_tenant_cannot_name_another_namespaces_objects_or_an_unlisted_model(
    kubescribe: Kubescribe, namespace: str, victim: str, speech_dir: Path
) -> None:
    cluster = kubescribe.cluster
    tenant = as_tenant(cluster, namespace)
    other = victim.split("/", maxsplit=1)[0]
    stolen = {"s3": {"bucket": "audio", "key": victim}}
    own_key = f"{namespace}/mine.wav"
    kubescribe.upload("audio", own_key, speak(speech_dir, "mine", "This one is mine."))
    own = {"s3": {"bucket": "audio", "key": own_key}}
    cases = {
        "read": (job(namespace, "read", source=stolen), f"may not read s3://audio/{victim}"),
        "overwrite": (
            job(namespace, "overwrite", source=own, outputs={"s3": {"bucket": "transcripts", "prefix": f"{other}/x/"}}),
            f"may not write s3://transcripts/{other}/x/",
        ),
        "climb": (
            job(namespace, "climb", source={"s3": {"bucket": "audio", "key": f"{namespace}/../{victim}"}}),
            "may not read",
        ),
        "bucket-model": (job(namespace, "bucket-model", source=own, model="s3://audio/"), "model policy: s3://audio/"),
        "hub-model": (job(namespace, "hub-model", source=own, model="org/any-repo"), "model policy: org/any-repo"),
    }
    for body, message in cases.values():
        result = create(cluster, body, user=tenant)
        assert result.returncode != 0, body
        assert message in result.stderr, result.stderr
        assert "storage.buckets" in result.stderr or "models.allowed" in result.stderr
    assert cluster.get("tj", "-n", namespace)["items"] == []

    # The same tenant's job within its own prefix, with a shared model location, is accepted and runs.
    allowed = job(namespace, "allowed", source=own)
    assert create(cluster, allowed, user=tenant).returncode == 0
    status = kubescribe.wait_finished(namespace, "allowed")["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert not kubescribe.exists(f"s3://transcripts/{other}/")


@pytest.fixture
def without_admission_policy(kubescribe: Kubescribe, namespace: str, victim: str) -> Iterator[None]:
    """The policy's binding deleted, as on a cluster where the chart's admission policy is off; restored after, still
    the release's (Helm's annotations say so)."""
    cluster = kubescribe.cluster
    binding = cluster.get("validatingadmissionpolicybinding", POLICY)
    probe = job(namespace, "probe", source={"s3": {"bucket": "audio", "key": victim}})
    cluster.kubectl("delete", "validatingadmissionpolicybinding", POLICY)
    try:
        wait_for(lambda: create(cluster, probe, dry_run=True).returncode == 0, 30, "the policy to stop applying")
        yield
    finally:
        metadata = binding["metadata"]
        binding["metadata"] = {key: metadata[key] for key in ("name", "labels", "annotations") if key in metadata}
        cluster.apply(binding)
        wait_for(lambda: create(cluster, probe, dry_run=True).returncode != 0, 30, "the policy to apply again")


@pytest.mark.usefixtures("without_admission_policy")
def test_without_the_admission_policy_the_operator_refuses_before_reading_or_writing(
    kubescribe: Kubescribe, namespace: str, victim: str
) -> None:
    cluster = kubescribe.cluster
    other = victim.split("/", maxsplit=1)[0]
    stolen = job(
        namespace,
        "steal",
        source={"s3": {"bucket": "audio", "key": victim}},
        outputs={"formats": ["txt"], "s3": {"bucket": "transcripts", "prefix": f"{other}/steal/"}},
    )
    model = job(namespace, "model", source={"s3": {"bucket": "audio", "key": f"{namespace}/a.wav"}}, model="org/x")
    for body in (stolen, model):
        assert create(cluster, body).returncode == 0
    for name, reason, words in (
        ("steal", "StorageForbidden", f"namespace {namespace} may not read s3://audio/{victim}"),
        ("model", "ModelForbidden", "model policy: org/x is not an allowed model"),
    ):
        status = kubescribe.wait_finished(namespace, name)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", reason), status
        assert words in status["message"]
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert (failed["status"], failed["reason"]) == ("True", reason)
        events = cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
        assert any(e["type"] == "Warning" and e["reason"] == reason for e in events), events
        # Nothing was made for it: no runner, no grants, no pod.
        for kind in ("job", "secret", "serviceaccount"):
            assert cluster.try_get(kind, f"transcribe-{name}", "-n", namespace) is None
        assert kubescribe.runner_pods(namespace, name) == []
    assert not kubescribe.exists(f"s3://transcripts/{other}/")


def test_after_the_chart_is_uninstalled_and_installed_again_the_policy_admits_and_refuses_as_before(
    kubescribe: Kubescribe, namespace: str
) -> None:
    """`helm uninstall` deletes the policy and its binding together, and `helm install` creates them again."""
    cluster = kubescribe.cluster
    try:
        cluster.run("helm", "uninstall", kubescribe.release, "-n", kubescribe.namespace, "--wait", "--timeout", "3m")
    finally:
        kubescribe.install()
    tenant = as_tenant(cluster, namespace)
    stolen = job(namespace, "stolen", source={"s3": {"bucket": "audio", "key": "elsewhere/uploads/tj-x/audio"}})
    own = job(namespace, "own", source={"s3": {"bucket": "audio", "key": f"{namespace}/mine.wav"}})

    refused = wait_for(
        lambda: (result := create(cluster, stolen, user=tenant, dry_run=True)).returncode != 0 and result,
        30,
        "the policy to apply",
    )
    assert f"storage policy: namespace {namespace} may not read s3://audio/elsewhere/" in refused.stderr, refused.stderr
    admitted = create(cluster, own, user=tenant, dry_run=True)
    assert admitted.returncode == 0, admitted.stderr
