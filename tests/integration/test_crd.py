"""The API server itself validates TranscriptionJobs with the generated CRD: what kubectl users see."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import Cluster

SAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples/transcriptionjob.yaml").read_text())
del SAMPLE["metadata"]["namespace"]  # each test applies it in a namespace of its own


def with_spec(name: str, **changes: Any) -> dict[str, Any]:
    """The sample with spec fields replaced; a path such as "options.beamSize" reaches into nested objects,
    and the value None removes the field."""
    manifest = copy.deepcopy(SAMPLE)
    manifest["metadata"]["name"] = name
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = manifest["spec"]
        for parent in parents:
            target = target.setdefault(parent, {})
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return manifest


def apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]):
    # The sample's objects are under the prefix of its namespace, default: here under the test's namespace's,
    # where the storage policy lets its jobs read and write.
    body = json.dumps(manifest).replace('"default/', f'"{namespace}/')
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body, check=False)


def test_the_sample_is_accepted_and_shown_with_its_columns(cluster: Cluster, crd: str, namespace: str) -> None:
    result = apply(cluster, namespace, SAMPLE)
    assert result.returncode == 0, result.stderr
    table = cluster.kubectl("get", "tj", "-n", namespace).stdout.splitlines()
    columns = ["NAME", "PHASE", "POSITION", "REASON", "PROGRESS", "MODEL", "POOL", "LANGUAGE", "DURATION", "AGE"]
    assert table[0].split() == columns
    assert table[1].split()[0:2] == ["jfk", "tiny.en"]  # no phase, reason, progress or result yet
    assert "jfk" in cluster.kubectl("get", "tjob", "-n", namespace).stdout
    assert "jfk" in cluster.kubectl("get", "kubescribe", "-n", namespace).stdout
    explained = cluster.kubectl("explain", "transcriptionjob.spec.source").stdout
    assert "exactly one of s3 and url" in explained


def test_defaults_are_filled_in_by_the_api_server(cluster: Cluster, crd: str, namespace: str) -> None:
    minimal = {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": "minimal"},
        "spec": {"source": {"url": "https://example.org/talk.mp3"}},
    }
    assert apply(cluster, namespace, minimal).returncode == 0
    spec = cluster.get("tj", "minimal", "-n", namespace)["spec"]
    assert spec["model"] == "tiny.en"
    assert spec["task"] == "transcribe"
    assert spec["outputs"]["formats"] == ["json", "txt", "srt", "vtt"]
    assert spec["options"]["beamSize"] == 5
    assert spec["resources"]["gpu"] == 1
    assert spec["ttlSecondsAfterFinished"] == 7200


INVALID = [
    ("both-sources", {"source.url": "https://example.org/a.mp3"}, "exactly one of source.s3 and source.url"),
    ("no-source-kind", {"source.s3": None}, "exactly one of source.s3 and source.url"),
    ("no-source", {"source": None}, "spec.source: Required value"),
    ("unknown-format", {"outputs.formats": ["json", "docx"]}, 'Unsupported value: "docx"'),
    ("repeated-format", {"outputs.formats": ["json", "json"]}, "Duplicate value"),
    ("no-format", {"outputs.formats": []}, "should have at least 1 items"),
    ("negative-ttl", {"ttlSecondsAfterFinished": -1}, "should be greater than or equal to 0"),
    ("zero-deadline", {"activeDeadlineSeconds": 0}, "should be greater than or equal to 1"),
    ("zero-beam", {"options.beamSize": 0}, "should be greater than or equal to 1"),
    ("huge-beam", {"options.beamSize": 21}, "should be less than or equal to 20"),
    ("negative-gpu", {"resources.gpu": -1}, "should be greater than or equal to 0"),
    ("many-backoffs", {"backoffLimit": 11}, "should be less than or equal to 10"),
    ("unknown-task", {"task": "summarize"}, 'Unsupported value: "summarize"'),
    ("translate-english-only", {"task": "translate"}, "translate needs a multilingual model"),
    ("misspelled-model", {"model": "tiny.eng"}, "spec.model: Invalid value"),
    ("ftp-url", {"source.s3": None, "source.url": "ftp://example.org/a.mp3"}, "spec.source.url: Invalid value"),
    ("bad-bucket", {"source.s3.bucket": "Audio_Files"}, "spec.source.s3.bucket: Invalid value"),
    ("empty-key", {"source.s3.key": ""}, "spec.source.s3.key: Invalid value"),
    ("long-language", {"language": "english"}, "spec.language: Invalid value"),
    ("bad-cpu", {"resources.cpu": "two"}, "spec.resources.cpu: Invalid value"),
    ("bad-webhook", {"webhookUrl": "not a url"}, "spec.webhookUrl: Invalid value"),
    ("priority-too-high", {"priority": 5000}, "should be less than or equal to 1000"),
    ("unknown-field", {"options.beamsize": 3}, 'unknown field "spec.options.beamsize"'),
    (
        "toleration-exists-with-value",
        {"resources.tolerations": [{"key": "example.com/pool", "operator": "Exists", "value": "a"}]},
        "a toleration with operator Exists takes no value",
    ),
    ("toleration-bad-key", {"resources.tolerations": [{"key": "bad key", "operator": "Exists"}]}, "Invalid value"),
    ("selector-bad-value", {"resources.nodeSelector": {"pool": "a b"}}, "Invalid value"),
    (
        "endpoint-alone",
        {"source.s3.endpoint": "https://s3.example.org"},
        "source.s3.endpoint and source.s3.secretName go together",
    ),
    (
        "secret-alone",
        {"source.s3.secretName": "my-store"},
        "source.s3.endpoint and source.s3.secretName go together",
    ),
]


@pytest.mark.parametrize(("name", "changes", "message"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_manifests_are_rejected_at_apply_time(
    cluster: Cluster, crd: str, namespace: str, name: str, changes: dict[str, Any], message: str
) -> None:
    result = apply(cluster, namespace, with_spec(name, **changes))
    assert result.returncode != 0, f"{name} was accepted"
    assert message in result.stderr
    assert cluster.try_get("tj", name, "-n", namespace) is None


def test_the_spec_cannot_change_after_creation(cluster: Cluster, crd: str, namespace: str) -> None:
    assert apply(cluster, namespace, with_spec("fixed")).returncode == 0
    result = apply(cluster, namespace, with_spec("fixed", model="base"))
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr
    assert cluster.get("tj", "fixed", "-n", namespace)["spec"]["model"] == "tiny.en"
