"""What a tenant can reach in the store: a job's namespace holds presigned URLs for that job's objects only, never
the store's credentials, and those URLs open nothing else."""

from __future__ import annotations

import base64
import datetime
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from kubescribe.api.timestamps import parse_timestamp
from kubescribe.contract import ENV_STORE_GRANTS, UPLOADED_SOURCE_ANNOTATION, StoreGrants
from kubescribe.operator.grants import MAX_MODEL_FILES
from tests.integration.conftest import Kubescribe, wait_for
from tests.integration.speech import speak

SENTENCE = "Only this recording belongs to this job."


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def status_of(url: str, method: str = "GET", data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path))


def test_a_jobs_namespace_holds_only_urls_for_its_own_objects(
    kubescribe: Kubescribe, namespace: str, speech_dir: Path
) -> None:
    wav = speak(speech_dir, "isolated", SENTENCE)
    kubescribe.upload("audio", f"{namespace}/neighbour.wav", wav)
    kubescribe.submit_audio(namespace, "isolated", wav, outputs={"formats": ["txt"]})
    job = kubescribe.wait_finished(namespace, "isolated")
    assert job["status"]["phase"] == "Succeeded", job["status"].get("message")
    assert "only this recording" in kubescribe.read(job["status"]["result"]["outputs"]["txt"]).lower()

    secret = kubescribe.cluster.get("secret", "transcribe-isolated", "-n", namespace)
    assert set(secret["data"]) == {ENV_STORE_GRANTS}
    content = base64.b64decode(secret["data"][ENV_STORE_GRANTS]).decode()
    # The access key's id is in each URL's signature scope, as in every presigned URL; the secret key is nowhere.
    assert kubescribe.cluster.state.minio_password not in content
    grants = StoreGrants.model_validate_json(content)
    assert grants.source is not None and grants.source.uri == f"s3://audio/{namespace}/isolated.wav"
    assert {grant.uri for grant in grants.outputs.values()} == {f"s3://transcripts/{namespace}/isolated/isolated.txt"}

    # The source's URL reads the source, and nothing else: not a neighbour's object, not the bucket's listing.
    assert status_of(grants.source.url) == 200
    assert status_of(with_path(grants.source.url, f"/audio/{namespace}/neighbour.wav")) == 403
    assert status_of(with_path(grants.source.url, "/audio/")) == 403
    assert status_of(grants.source.url, "DELETE") == 403
    assert status_of(grants.source.url, "PUT", b"overwritten") == 403
    # A transcript's URL writes that transcript only; it cannot read it back or write elsewhere.
    [output] = grants.outputs.values()
    assert status_of(output.url) == 403
    assert status_of(with_path(output.url, f"/transcripts/{namespace}/other.txt"), "PUT", b"x") == 403
    assert "only this recording" in kubescribe.read(output.uri).lower()


@pytest.mark.parametrize("case", ["too-many", "no-model"])
def test_a_model_prefix_that_is_not_one_model_fails_the_job_with_the_reason(
    kubescribe: Kubescribe, namespace: str, speech_dir: Path, tmp_path: Path, case: str
) -> None:
    model = "s3://models/nowhere/"
    if case == "too-many":
        model = f"s3://audio/{namespace}/many/"
        (tmp_path / "object").write_bytes(b"x")
        for index in range(MAX_MODEL_FILES + 1):
            kubescribe.upload("audio", f"{namespace}/many/{index}", tmp_path / "object")
    kubescribe.submit_audio(namespace, case, speak(speech_dir, "isolated", SENTENCE), model=model)
    status = kubescribe.wait_finished(namespace, case)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ModelNotFound"), status
    assert model in status["message"]


def test_deleting_a_job_marked_as_uploaded_deletes_no_object_but_its_own_upload(
    kubescribe: Kubescribe, namespace: str, speech_dir: Path
) -> None:
    wav = speak(speech_dir, "isolated", SENTENCE)
    kubescribe.upload("audio", f"{namespace}/precious.wav", wav)
    kubescribe.cluster.apply(
        {
            "apiVersion": "kubescribe.io/v1alpha1",
            "kind": "TranscriptionJob",
            "metadata": {
                "name": "forged",
                "namespace": namespace,
                "annotations": {UPLOADED_SOURCE_ANNOTATION: "true"},
            },
            "spec": {
                "resources": {"gpu": 0},
                "source": {"s3": {"bucket": "audio", "key": f"{namespace}/precious.wav"}},
            },
        }
    )
    kubescribe.wait_finished(namespace, "forged")
    kubescribe.cluster.kubectl("delete", "tj", "forged", "-n", namespace, "--wait=true", "--timeout=60s")
    assert kubescribe.exists(f"s3://audio/{namespace}/precious.wav")


def test_a_jobs_urls_stop_working_after_its_deadline(kubescribe: Kubescribe, namespace: str, speech_dir: Path) -> None:
    kubescribe.submit_audio(namespace, "brief", speak(speech_dir, "isolated", SENTENCE), activeDeadlineSeconds=10)

    def granted() -> StoreGrants | None:
        secret = kubescribe.cluster.try_get("secret", "transcribe-brief", "-n", namespace)
        return StoreGrants.model_validate_json(base64.b64decode(secret["data"][ENV_STORE_GRANTS])) if secret else None

    grants = wait_for(granted, 60, "the job's grants")
    assert grants.source is not None
    expires = parse_timestamp(grants.expires)
    assert expires - now() <= datetime.timedelta(seconds=10 + kubescribe.grant_grace_seconds)
    wait_for(lambda: now() > expires + datetime.timedelta(seconds=1), 30, "the deadline and its grace to pass")
    assert status_of(grants.source.url) == 403
    [output] = [grant for format_, grant in grants.outputs.items() if format_ == "txt"]
    assert status_of(output.url, "PUT", b"late") == 403
