"""Batches through the gateway installed by the chart: several files of espeak-ng speech transcribed under one label
and followed together, sources held to the storage policy as a job is, a cancelled batch that leaves nothing behind,
and the limits that refuse a batch whole."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Gateway, Kubescribe, wait_for
from tests.integration.speech import PASSAGE, speak, word_error_rate

SENTENCES = (
    "The operator watches every request and reports its progress until the work is done.",
    "Speech recognition turns spoken words into written text.",
    "Small models are fast and large models are accurate.",
)
MAX_WER = 0.3


@pytest.fixture
def caller(gateway: Gateway, namespace: str) -> httpx.Client:
    """A key of a namespace of the test's own: the cap on waiting jobs is the namespace's."""
    key = gateway.create_key(namespace, "batches")
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    wait_for(lambda: client.get("/v1/models").status_code == 200, 30, "the new key to be read")
    return client


@contextlib.contextmanager
def opened(paths: list[Path]) -> Iterator[list[tuple[str, tuple[str, Any]]]]:
    with contextlib.ExitStack() as stack:
        yield [("file", (path.name, stack.enter_context(path.open("rb")))) for path in paths]


def post_files(client: httpx.Client, paths: list[Path], **form: str) -> httpx.Response:
    with opened(paths) as parts:
        return client.post("/v1/batches", files=parts, data=form)


def batch_jobs(kubescribe: Kubescribe, namespace: str, batch_id: str) -> list[dict[str, Any]]:
    selector = f"kubescribe.io/batch={batch_id}"
    found: list[dict[str, Any]] = kubescribe.cluster.get("tj", "-n", namespace, "-l", selector)["items"]
    return found


def uploads(kubescribe: Kubescribe, namespace: str) -> list[str]:
    return [o.object_name for o in kubescribe.s3.list_objects("audio", prefix=f"{namespace}/uploads/", recursive=True)]


def test_a_batch_of_files_is_transcribed_and_followed_together(
    gateway: Gateway, kubescribe: Kubescribe, caller: httpx.Client, namespace: str, speech_dir: Path
) -> None:
    paths = [speak(speech_dir, f"batch-{i}", text) for i, text in enumerate(SENTENCES)]
    response = post_files(caller, paths, model="tiny.en", formats="txt,json", language="en")
    assert response.status_code == 202, response.text
    created = response.json()
    batch_id = created["id"]
    assert response.headers["location"] == f"/v1/batches/{batch_id}"
    assert created["not_created"] == []
    assert [job["filename"] for job in created["jobs"]] == [path.name for path in paths]

    # It is just a label: kubectl lists the batch.
    listed = batch_jobs(kubescribe, namespace, batch_id)
    assert sorted(job["metadata"]["name"] for job in listed) == sorted(job["id"] for job in created["jobs"])

    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = caller.get(f"/v1/batches/{batch_id}").json()
        return view if view["finished"] else None

    view = wait_for(finished, 300, "the batch to finish", interval=2)
    assert (view["total"], view["counts"]["Succeeded"], view["progress"]["percent"]) == (3, 3, 100.0)
    assert view["progress"]["by"] == "duration"
    for file, text in zip(view["files"], SENTENCES, strict=True):
        assert (file["phase"], file["reason"]) == ("Succeeded", None)
        assert set(file["transcripts"]) == {"txt", "json"}
        transcript = caller.get(file["transcripts"]["txt"])
        assert transcript.status_code == 200
        assert word_error_rate(text, transcript.text) < MAX_WER, (text, transcript.text)

    # Another namespace's key finds no such batch.
    theirs = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.keys['gw-a']}"})
    for method in ("GET", "DELETE"):
        response = theirs.request(method, f"/v1/batches/{batch_id}")
        assert response.status_code == 404, (method, response.text)
        assert response.json()["error"]["code"] == "batch_not_found"
    assert len(batch_jobs(kubescribe, namespace, batch_id)) == 3

    # Cancelling a finished batch cancels nothing.
    cancelled = caller.delete(f"/v1/batches/{batch_id}").json()
    assert (cancelled["cancelled"], len(cancelled["kept"])) == ([], 3)


def test_a_cancelled_batch_leaves_no_jobs_and_no_uploads_behind(
    gateway: Gateway, kubescribe: Kubescribe, caller: httpx.Client, namespace: str, speech_dir: Path
) -> None:
    passage = speak(speech_dir, "passage", PASSAGE)
    response = post_files(caller, [passage, passage, passage], model="tiny.en", vad="false")
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    assert len(uploads(kubescribe, namespace)) == 3

    cancelled = caller.delete(f"/v1/batches/{batch_id}")
    assert cancelled.status_code == 202, cancelled.text
    assert sorted(cancelled.json()["cancelled"]) == sorted(job["id"] for job in response.json()["jobs"])
    wait_for(lambda: not batch_jobs(kubescribe, namespace, batch_id), 120, "the batch's jobs to go")
    wait_for(lambda: not uploads(kubescribe, namespace), 60, "the batch's uploads to go")
    assert not list(kubescribe.s3.list_objects("transcripts", prefix=f"{namespace}/", recursive=True))
    assert caller.get(f"/v1/batches/{batch_id}").status_code == 404


def test_sources_are_held_to_the_storage_policy_as_a_job_is(
    gateway: Gateway, kubescribe: Kubescribe, caller: httpx.Client, namespace: str, speech_dir: Path
) -> None:
    wav = speak(speech_dir, "batch-0", SENTENCES[0])
    kubescribe.upload("audio", f"{namespace}/talks/mine.wav", wav)
    kubescribe.upload("audio", "gw-a/talks/theirs.wav", wav)
    mine, theirs = f"s3://audio/{namespace}/talks/mine.wav", "s3://audio/gw-a/talks/theirs.wav"

    refused = caller.post("/v1/batches", json={"sources": [mine, theirs], "model": "tiny.en"})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("permission_error", "sources[1]", "job_refused")
    rule = f"storage policy: namespace {namespace} may not read {theirs}"
    assert rule in error["message"]
    assert kubescribe.cluster.get("tj", "-n", namespace)["items"] == []

    # A job applied with kubectl is refused for the same rule.
    single = {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": "theirs", "namespace": namespace},
        "spec": {"source": {"s3": {"bucket": "audio", "key": "gw-a/talks/theirs.wav"}}},
    }
    applied = kubescribe.cluster.kubectl("apply", "-f", "-", input=json.dumps(single), check=False)
    assert applied.returncode != 0 and rule in applied.stderr

    accepted = caller.post("/v1/batches", json={"sources": [mine], "model": "tiny.en", "formats": "txt"})
    assert accepted.status_code == 202, accepted.text
    [job] = accepted.json()["jobs"]
    assert job["filename"] == "mine.wav"
    done = kubescribe.wait_finished(namespace, job["id"])
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["spec"]["source"]["s3"] == {"bucket": "audio", "key": f"{namespace}/talks/mine.wav"}
    assert "kubescribe.io/uploaded-source" not in done["metadata"]["annotations"]
    assert caller.delete(f"/v1/jobs/{job['id']}").status_code == 202
    # The source was named, not uploaded: it stays when its job goes.
    wait_for(lambda: kubescribe.job(namespace, job["id"]) is None, 60, "the job to go")
    assert kubescribe.exists(mine)


def test_a_batch_over_a_limit_is_refused_whole(
    gateway: Gateway, kubescribe: Kubescribe, caller: httpx.Client, namespace: str, speech_dir: Path
) -> None:
    wav = speak(speech_dir, "batch-0", SENTENCES[0])
    sources = [f"https://example.org/{i}.wav" for i in range(gateway.max_batch_files + 1)]
    too_many = caller.post("/v1/batches", json={"sources": sources})
    assert too_many.status_code == 400, too_many.text
    assert too_many.json()["error"]["code"] == "too_many_files"
    assert f"at most {gateway.max_batch_files} files" in too_many.json()["error"]["message"]

    # Within the batch limit, but more jobs than the namespace may have waiting: refused at the file past its room.
    assert gateway.max_queued_jobs < gateway.max_batch_files
    no_room = post_files(caller, [wav] * gateway.max_batch_files)
    assert no_room.status_code == 429, no_room.text
    assert no_room.json()["error"]["code"] == "too_many_queued_jobs"
    assert int(no_room.headers["retry-after"]) >= 1

    not_audio = Path(speech_dir / "notes.wav")
    not_audio.write_bytes(b"meeting notes, not a recording\n" * 100)
    refused = post_files(caller, [wav, not_audio])
    assert refused.status_code == 415, refused.text
    assert "notes.wav" in refused.json()["error"]["message"]

    assert kubescribe.cluster.get("tj", "-n", namespace)["items"] == []
    assert uploads(kubescribe, namespace) == []
