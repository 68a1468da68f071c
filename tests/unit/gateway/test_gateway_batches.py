"""Batches: their ids and the jobs built for them, the batch view (counts, progress, files), and the whole route
against stand-in stores: files streamed and checked one by one, sources tried in a dry run, refusals that create
nothing, and an API server that fails midway."""

from __future__ import annotations

import io
import json
import math
import re
import struct
import wave
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes.client.rest import ApiException

from kubescribe.api.v1alpha1 import TranscriptionJob
from kubescribe.contract import CLEANUP_FINALIZER, UPLOADED_SOURCE_ANNOTATION
from kubescribe.gateway.access.caller import Access
from kubescribe.gateway.access.concurrency import ConcurrencyLimit
from kubescribe.gateway.access.keys import KeyRecord, KeyStore, hash_key
from kubescribe.gateway.access.ratelimit import RateLimiter
from kubescribe.gateway.access.tokens import verb_for
from kubescribe.gateway.app import create_app
from kubescribe.gateway.errors import Unavailable
from kubescribe.gateway.intake import resource
from kubescribe.gateway.intake.batch import SOURCE, refused, source_filename, source_spec
from kubescribe.gateway.intake.submission import Submission, s3_source, transcription_job_spec
from kubescribe.gateway.routes import batch_views
from kubescribe.gateway.settings import GatewaySettings

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_batch_ids_are_label_values_and_label_every_job_of_the_batch() -> None:
    batch_id = resource.new_batch_id()
    assert resource.is_batch_id(batch_id) and not resource.is_job_id(batch_id)
    assert LABEL_VALUE.match(batch_id) and len(batch_id) <= 63
    assert not resource.is_batch_id("tb-../../x") and not resource.is_batch_id(resource.new_job_id())
    spec = transcription_job_spec(Submission(model="base"), source_spec("https://example.org/talks/a%20b.mp3"), 0)
    built = resource.build_transcription_job(
        "ns", "tj-abc", spec, "a b.mp3", request_id="r", requested_by="alice", uploaded=False, batch=(batch_id, 7)
    )
    TranscriptionJob.model_validate(built)
    assert built["metadata"]["labels"] == {"kubescribe.io/submitted-by": "gateway", resource.BATCH_LABEL: batch_id}
    assert built["metadata"]["annotations"][resource.BATCH_INDEX_ANNOTATION] == "7"
    assert UPLOADED_SOURCE_ANNOTATION not in built["metadata"]["annotations"]
    assert built["spec"]["source"] == {"url": "https://example.org/talks/a%20b.mp3"}
    assert "finalizers" not in built["metadata"]
    uploaded = resource.build_transcription_job(
        "ns",
        "tj-abc",
        transcription_job_spec(Submission(model="base"), s3_source("audio", "ns/uploads/tj-abc/audio"), 0),
        "a.wav",
        request_id="r",
        requested_by="alice",
    )
    assert uploaded["metadata"]["finalizers"] == [CLEANUP_FINALIZER]  # its audio goes with it, however soon


def test_sources_name_s3_objects_or_urls() -> None:
    assert source_spec("s3://audio/team-a/talks/monday.mp3") == s3_source("audio", "team-a/talks/monday.mp3")
    assert source_filename("s3://audio/team-a/talks/monday.mp3") == "monday.mp3"
    assert source_filename("https://example.org/a/r%C3%A9sum%C3%A9.wav?x=1") == "r\u00e9sum\u00e9.wav"
    assert source_filename("https://example.org/") == "audio"
    assert source_filename("http://[") == "audio"
    assert source_filename("s3://audio/a/50%25.wav") == "50%25.wav"
    for good in ("s3://audio/a", "https://example.org/a.mp3", "http://x"):
        assert re.match(SOURCE, good), good
    for bad in ("s3://a/k", "s3://audio/", "s3://Audio/k", "ftp://x/a", "/etc/passwd", "https://a b"):
        assert not re.match(SOURCE, bad), bad


def test_tokens_need_list_to_see_a_batch_and_delete_to_cancel_it() -> None:
    assert verb_for("POST", "/v1/batches") == "create"
    assert verb_for("GET", "/v1/batches/tb-abc") == "list"
    assert verb_for("DELETE", "/v1/batches/tb-abc") == "delete"


def test_the_api_servers_refusals_keep_their_message() -> None:
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"message": "storage policy: namespace b may not read s3://audio/a/x"})
    error = refused(forbidden)
    assert (error.status_code, error.code) == (403, "job_refused")
    assert "may not read s3://audio/a/x" in str(error.detail)
    assert refused(ApiException(status=422, reason="Invalid")).status_code == 400
    assert refused(RuntimeError("boom")).status_code == 500


def job(name: str, phase: str | None = None, index: int | None = None, **status: Any) -> dict[str, Any]:
    annotations = {resource.FILENAME_ANNOTATION: f"{name}.wav"}
    if index is not None:
        annotations[resource.BATCH_INDEX_ANNOTATION] = str(index)
    found: dict[str, Any] = {
        "metadata": {"namespace": "a", "name": name, "annotations": annotations},
        "spec": {"source": {"s3": {"bucket": "audio", "key": f"a/uploads/{name}/audio"}}},
        "status": {"phase": phase, **status} if phase else {},
    }
    found["spec"]["outputs"] = {"formats": ["txt", "srt"]}
    return found


def test_batch_progress_is_by_duration_once_every_duration_is_known() -> None:
    assert batch_views.batch_progress([]) == {"percent": 0.0, "by": "jobs"}
    running = job("tj-1", "Running", progress={"percent": 50})
    waiting = job("tj-2", "Queued")
    failed = job("tj-3", "Failed", reason="BadAudio")
    assert batch_views.batch_progress([running, waiting, failed]) == {"percent": 50.0, "by": "jobs"}
    long = job("tj-4", "Running", progress={"percent": 25, "durationSeconds": 300})
    short = job("tj-5", "Succeeded", result={"durationSeconds": 100})
    assert batch_views.batch_progress([long, short]) == {"percent": 43.8, "by": "duration"}
    assert batch_views.batch_progress([job("tj-6", "Running", progress={"percent": 250})])["percent"] == 100.0


def test_the_batch_view_counts_phases_and_shows_each_file_in_order() -> None:
    succeeded = job("tj-b", "Succeeded", index=1, result={"outputs": {"txt": "s3://transcripts/a/tj-b/audio.txt"}})
    failed = job("tj-a", "Failed", index=0, reason="BadAudio", message="no samples")
    view = batch_views.batch_view("tb-1", "a", [succeeded, failed, job("tj-c", index=2)], "transcripts")
    assert [file["id"] for file in view["files"]] == ["tj-a", "tj-b", "tj-c"]
    assert view["counts"] == {
        "Pending": 1,
        "Queued": 0,
        "Running": 0,
        "Succeeded": 1,
        "Failed": 1,
        "Cancelled": 0,
    }
    assert (view["total"], view["finished"], view["status_url"]) == (3, False, "/v1/batches/tb-1")
    first, second, _ = view["files"]
    assert (first["reason"], first["message"], first["transcripts"]) == ("BadAudio", "no samples", {})
    # Only transcripts the job's own output location holds are linked, as the transcript route serves them.
    assert second["transcripts"] == {"txt": "/v1/jobs/tj-b/transcript?format=txt"}
    assert (second["percent"], second["filename"], second["index"]) == (100.0, "tj-b.wav", 1)


def wav(seconds: float = 0.5) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        samples = (int(8000 * math.sin(i / 10)) for i in range(int(16000 * seconds)))
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return buffer.getvalue()


class FakeObjects:
    """The object store's multipart uploads, as StreamingUpload uses them."""

    def __init__(self) -> None:
        self.completed: list[str] = []
        self.aborted: list[str] = []
        self.removed: list[str] = []

    def _create_multipart_upload(self, bucket: str, key: str, headers: dict[str, str]) -> str:
        return f"up-{key}"

    def _upload_part(self, bucket: str, key: str, data: bytes, headers: Any, upload_id: str, number: int) -> str:
        return f"etag-{number}"

    def _complete_multipart_upload(self, bucket: str, key: str, upload_id: str, parts: list[Any]) -> None:
        self.completed.append(key)

    def _abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.aborted.append(key)

    def remove_object(self, bucket: str, key: str) -> None:
        self.removed.append(key)


class FakeJobs:
    """The API server's TranscriptionJobs: refuses a dry run of a forbidden source, and fails after `fail_after`
    creations."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.dry_runs = 0
        self.deleted: list[str] = []
        self.fail_after = fail_after

    def create(self, job: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        if dry_run:
            self.dry_runs += 1
            if "forbidden" in json.dumps(job["spec"]["source"]):
                error = ApiException(status=403, reason="Forbidden")
                error.body = json.dumps({"message": "storage policy: namespace team-a may not read it"})
                raise error
            return job
        if self.fail_after is not None and len(self.created) >= self.fail_after:
            raise Unavailable("the Kubernetes API server")
        self.created.append(job)
        return job

    def list(self, namespace: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [
            found
            for found in self.created
            if found["metadata"]["namespace"] == namespace
            and (labels or {}).items() <= found["metadata"]["labels"].items()
        ]

    def delete(self, namespace: str, name: str) -> None:
        self.deleted.append(name)


KEY = "ks_batch"


def batch_client(jobs: FakeJobs, objects: FakeObjects, waiting: int = 0, **settings: Any) -> TestClient:
    queued = [{"metadata": {"namespace": "team-a"}, "status": {"phase": "Queued"}}] * waiting
    watcher = SimpleNamespace(start=lambda: None, stop=lambda: None, jobs=lambda: queued)
    options = {"max_queued_jobs_per_namespace": 5, "max_batch_files": 4, "job_gpus": 0, **settings}
    gateway = SimpleNamespace(settings=GatewaySettings(**options), jobs=jobs, watcher=watcher, objects=objects)
    record = KeyRecord(hash_key(KEY), "team-a", "alice", "t")
    keys = KeyStore(lambda: {record.hash: record}, 60)
    keys.refresh()
    access = Access(
        keys,
        None,
        RateLimiter(10, 100),  # the longest test sends 48 refused requests at once
        RateLimiter(1, 10),
        ConcurrencyLimit("uploads", 4),
        ConcurrencyLimit("event streams", 4),
        ConcurrencyLimit("waits", 4),
    )
    app = create_app(gateway, access)  # type: ignore[arg-type]
    return TestClient(app, headers={"X-API-Key": KEY})


def files(*names: str, content: bytes | None = None) -> list[tuple[str, tuple[str, bytes]]]:
    return [("file", (name, wav() if content is None else content)) for name in names]


def test_a_batch_of_uploads_becomes_one_job_each_with_the_batchs_label() -> None:
    jobs, objects = FakeJobs(), FakeObjects()
    client = batch_client(jobs, objects)
    response = client.post("/v1/batches", files=files("a.wav", "b.wav", "c.wav"), data={"formats": "txt"})
    assert response.status_code == 202, response.text
    view = response.json()
    assert response.headers["location"] == view["status_url"] == f"/v1/batches/{view['id']}"
    assert [(job["index"], job["filename"]) for job in view["jobs"]] == [(0, "a.wav"), (1, "b.wav"), (2, "c.wav")]
    assert view["not_created"] == []
    assert {found["metadata"]["labels"][resource.BATCH_LABEL] for found in jobs.created} == {view["id"]}
    assert sorted(objects.completed) == sorted(f"team-a/uploads/{job['id']}/audio" for job in view["jobs"])
    assert {tuple(found["spec"]["outputs"]["formats"]) for found in jobs.created} == {("txt",)}
    assert objects.aborted == [] and objects.removed == []

    batch = client.get(view["status_url"]).json()
    assert (batch["total"], batch["counts"]["Pending"]) == (3, 3)
    assert [file["filename"] for file in batch["files"]] == ["a.wav", "b.wav", "c.wav"]
    cancelled = client.delete(view["status_url"])
    assert cancelled.status_code == 202
    assert sorted(cancelled.json()["cancelled"]) == sorted(jobs.deleted) == sorted(j["id"] for j in view["jobs"])
    # The operator's finalizer, there from their creation, deletes their uploads with them.
    assert all(found["metadata"]["finalizers"] == [CLEANUP_FINALIZER] for found in jobs.created)
    assert client.get("/v1/batches/tb-000000000000").status_code == 404
    assert client.get("/v1/batches/not-a-batch").json()["error"]["code"] == "batch_not_found"


def test_a_batch_is_refused_whole_before_any_job_exists() -> None:
    jobs, objects = FakeJobs(), FakeObjects()
    client = batch_client(jobs, objects)
    cases = [
        (files("a.wav", "b.wav", "c.wav", "d.wav", "e.wav"), {}, 400, "too_many_files"),
        (files("a.wav") + files("notes.txt", content=b"not audio" * 50), {}, 415, "unsupported_audio"),
        (files("a.wav") + files("empty.wav", content=b""), {}, 415, "unsupported_audio"),
        (files("a.wav", "b.wav"), {"model": "gpt-4"}, 400, "model_not_found"),
        (files("a.wav"), {"task": "translate", "model": "tiny.en"}, 400, None),
        (files("a.wav"), {"formats": "docx"}, 400, None),
        ([("file", (None, b"x"))], {}, 400, None),  # a field, not a file
    ]
    for parts, form, status, code in cases:
        response = client.post("/v1/batches", files=parts, data=form)
        assert response.status_code == status, (form, response.text)
        assert code is None or response.json()["error"]["code"] == code, response.text
    assert "notes.txt" in client.post("/v1/batches", files=cases[1][0]).json()["error"]["message"]
    assert jobs.created == [] and objects.completed == []

    full = batch_client(jobs, FakeObjects(), waiting=3)
    response = full.post("/v1/batches", files=files("a.wav", "b.wav", "c.wav"))
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_queued_jobs"
    assert "3 more would pass its limit of 5" in response.json()["error"]["message"]
    assert jobs.created == []
    assert client.post("/v1/batches", content=b"a=b", headers={"Content-Type": "text/plain"}).status_code == 415


def test_sources_are_tried_in_a_dry_run_and_refused_whole() -> None:
    jobs = FakeJobs()
    client = batch_client(jobs, FakeObjects())
    body = {"sources": ["s3://audio/team-a/a.mp3", "https://example.org/b.mp3"], "model": "base", "language": "de"}
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 202, response.text
    assert [job["filename"] for job in response.json()["jobs"]] == ["a.mp3", "b.mp3"]
    assert [found["spec"]["source"] for found in jobs.created] == [
        s3_source("audio", "team-a/a.mp3"),
        {"url": "https://example.org/b.mp3"},
    ]
    assert all(UPLOADED_SOURCE_ANNOTATION not in found["metadata"]["annotations"] for found in jobs.created)

    before = len(jobs.created)
    forbidden = client.post("/v1/batches", json={"sources": ["s3://audio/team-a/a.mp3", "s3://audio/forbidden/x"]})
    assert forbidden.status_code == 403, forbidden.text
    error = forbidden.json()["error"]
    assert (error["param"], error["code"]) == ("sources[1]", "job_refused")
    assert "storage policy" in error["message"]
    for wrong, status in [
        ({"sources": []}, 400),
        ({"sources": ["ftp://x/a"]}, 400),
        ({"sources": ["https://x/a"], "vad": "true"}, 400),  # JSON is taken as its schema types it
        ({"sources": ["https://x/a"], "extra": 1}, 400),
        ({"sources": ["https://x/a"] * 5}, 400),
    ]:
        assert client.post("/v1/batches", json=wrong).status_code == status, wrong
    assert client.post("/v1/batches", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert len(jobs.created) == before


def test_an_api_server_failing_midway_leaves_the_jobs_created_and_names_the_rest() -> None:
    jobs, objects = FakeJobs(fail_after=1), FakeObjects()
    client = batch_client(jobs, objects)
    response = client.post("/v1/batches", files=files("a.wav", "b.wav", "c.wav"))
    assert response.status_code == 202, response.text
    view = response.json()
    assert len(view["jobs"]) == 1 and len(view["not_created"]) == 2
    assert [job["metadata"]["name"] for job in jobs.created] == [view["jobs"][0]["id"]]
    for failure in view["not_created"]:
        assert failure["error"]["code"] == "service_unavailable"
    # The uploads of the files that are not jobs are gone: removed once completed, or aborted.
    created_key = f"team-a/uploads/{view['jobs'][0]['id']}/audio"
    assert set(objects.completed) - set(objects.removed) == {created_key}
    assert len(set(objects.removed) | set(objects.aborted)) == 2

    down = batch_client(FakeJobs(fail_after=0), objects)
    assert down.post("/v1/batches", json={"sources": ["https://x/a"]}).status_code == 503


def test_each_job_of_a_batch_costs_a_request_of_the_callers_rate() -> None:
    limiter = RateLimiter(1, 5)
    assert limiter.take("k", 0) == 0
    limiter.charge("k", 9, 0)  # a batch of ten: its request took one
    assert limiter.take("k", 0) == pytest.approx(6)
    assert limiter.take("k", 6) == 0


OPTIONS = {
    "model": "base",
    "task": "translate",
    "prompt": "Zyphora Quellbright",
    "hotwords": "Quillfeather",
    "beam_size": 1,
    "temperature": 0.4,
    "word_timestamps": True,
    "speakers": 2,
}
SPEC_OPTIONS = {
    "initialPrompt": "Zyphora Quellbright",
    "hotwords": "Quillfeather",
    "beamSize": 1,
    "temperature": 0.4,
    "wordTimestamps": True,
    "vad": True,
    "diarize": True,
    "minSpeakers": 2,
    "maxSpeakers": 2,
}


def test_a_job_and_a_batch_put_the_same_options_in_each_jobs_spec() -> None:
    jobs = FakeJobs()
    client = batch_client(jobs, FakeObjects())
    form = {name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in OPTIONS.items()}
    assert client.post("/v1/jobs", files=files("a.wav"), data=form).status_code == 202
    assert client.post("/v1/batches", files=files("b.wav"), data=form).status_code == 202
    assert client.post("/v1/batches", json={"sources": ["https://x/c.wav"], **OPTIONS}).status_code == 202
    # JSON Schema's integer takes 1.0 as 1.
    assert (
        client.post("/v1/batches", json={"sources": ["https://x/e.wav"], **OPTIONS, "beam_size": 1.0}).status_code
        == 202
    )
    assert [found["spec"]["options"] for found in jobs.created] == [SPEC_OPTIONS] * 4
    assert {found["spec"]["task"] for found in jobs.created} == {"translate"}

    client.post("/v1/jobs", files=files("d.wav"), data={"prompt": "", "hotwords": ""})
    assert jobs.created[-1]["spec"]["options"] == {
        "vad": True,
        "wordTimestamps": False,
        "beamSize": 5,
        "temperature": 0,
        "diarize": False,
    }


def test_a_job_and_a_batch_are_labelled_with_the_kueue_local_queue_asked_for() -> None:
    jobs = FakeJobs()
    client = batch_client(jobs, FakeObjects())
    assert client.post("/v1/jobs", files=files("a.wav"), data={"queue": "gpus"}).status_code == 202
    assert client.post("/v1/batches", files=files("b.wav"), data={"queue": "gpus"}).status_code == 202
    assert client.post("/v1/batches", json={"sources": ["https://x/c.wav"], "queue": "gpus"}).status_code == 202
    assert client.post("/v1/jobs", files=files("d.wav")).status_code == 202
    queues = [found["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") for found in jobs.created]
    assert queues == ["gpus", "gpus", "gpus", None]


def test_bad_options_are_refused_400_naming_the_field() -> None:
    jobs = FakeJobs()
    client = batch_client(jobs, FakeObjects())
    bad = [
        ("beam_size", "0"),
        ("beam_size", "21"),
        ("beam_size", "two"),
        ("beam_size", "2.5"),
        ("temperature", "1.5"),
        ("temperature", "-0.1"),
        ("temperature", "nan"),
        ("prompt", "x" * 2001),
        ("hotwords", "x" * 2001),
        ("word_timestamps", "perhaps"),
        ("speakers", "21"),
        ("speakers", "-1"),
        ("diarize", "perhaps"),
        ("queue", "GPUs"),
        ("queue", "gpus/other"),
        ("queue", "q" * 64),
    ]
    for field, value in bad:
        for path in ("/v1/jobs", "/v1/batches"):
            response = client.post(path, files=files("a.wav"), data={field: value})
            assert response.status_code == 400, (path, field, value, response.text)
            assert field in response.json()["error"]["message"], response.text
        typed: object = (
            float(value) if field in ("temperature", "beam_size", "speakers") and value[-1].isdigit() else value
        )
        response = client.post("/v1/batches", json={"sources": ["https://x/a.wav"], field: typed})
        assert response.status_code == 400, (field, value, response.text)
    assert jobs.created == []


def test_the_job_form_and_the_batch_options_document_the_same_fields() -> None:
    schemas = batch_client(FakeJobs(), FakeObjects()).get("/openapi.json").json()["components"]["schemas"]
    job_form = schemas["Body_create_job_v1_jobs_post"]["properties"]
    batch_form = schemas["BatchUpload"]["properties"]
    assert set(job_form) == set(batch_form)
    for name in ("prompt", "hotwords", "beam_size", "temperature", "word_timestamps", "diarize", "speakers", "queue"):
        assert {k: v for k, v in job_form[name].items() if k != "title"} == {
            k: v for k, v in batch_form[name].items() if k != "title"
        }, name
    assert (job_form["beam_size"]["minimum"], job_form["beam_size"]["maximum"]) == (1, 20)
    assert job_form["hotwords"]["maxLength"] == job_form["prompt"]["maxLength"] == 2000
