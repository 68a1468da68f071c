"""The gateway's pure parts: keys, credentials, rate limits, job names and views, pagination, OpenAI shapes."""

from __future__ import annotations

import base64
import json
import tempfile
from typing import Any

import pytest

from kubescribe.gateway import jobs
from kubescribe.gateway.auth import Unauthenticated, authenticate, credential, looks_like_jwt
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.keys import KeyRecord, KeyStore, hash_key, new_key, parse_records
from kubescribe.gateway.middleware import choose_request_id
from kubescribe.gateway.openai_format import render_json, resolve_model
from kubescribe.gateway.ratelimit import RateLimiter, TokenBucket, retry_after_header, waiting_jobs
from kubescribe.gateway.storage import PART_SIZE, StreamingUpload
from kubescribe.gateway.submit import Request, job_spec, parse_formats
from kubescribe.operator.handlers import UPLOADED_SOURCE_ANNOTATION


def encoded(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_keys_are_random_and_stored_as_hashes() -> None:
    key = new_key()
    assert key.startswith("ks_") and len(key) > 40 and key != new_key()
    records = parse_records(
        {hash_key(key): encoded({"namespace": "a", "name": "alice", "created": "now"}), "bad": "!!", "x": encoded([])}
    )
    assert records == {hash_key(key): KeyRecord(hash_key(key), "a", "alice", "now")}


def test_the_key_store_reads_again_when_stale() -> None:
    loads, now = [], [0.0]
    record = KeyRecord(hash_key("k"), "a", "alice", "t")

    def load() -> dict[str, KeyRecord]:
        loads.append(now[0])
        return {record.hash: record}

    store = KeyStore(load, 5, clock=lambda: now[0])
    assert store.lookup("k") == record
    now[0] = 4
    assert store.lookup("other") is None
    now[0] = 5
    store.lookup("k")
    assert loads == [0, 5]


def test_credentials_come_from_either_header() -> None:
    assert credential({"authorization": "Bearer abc"}) == "abc"
    assert credential({"authorization": "bearer  abc "}) == "abc"
    assert credential({"x-api-key": "abc"}) == "abc"
    assert credential({"authorization": "Basic abc"}) is None
    assert credential({}) is None
    assert looks_like_jwt("eyJhbGciOi.eyJpc3Mi.c2lnbmF0dXJl")
    assert not looks_like_jwt("ks_abc")


def test_authentication_by_key_and_refusal() -> None:
    record = KeyRecord(hash_key("ks_good"), "team-a", "alice", "t")
    store = KeyStore(lambda: {record.hash: record}, 60)
    principal = authenticate({"x-api-key": "ks_good"}, store, None)
    assert (principal.namespace, principal.subject, principal.identity) == ("team-a", "alice", record.hash)
    for headers in ({}, {"x-api-key": "ks_bad"}, {"authorization": "Bearer a.b.c"}):
        with pytest.raises(Unauthenticated):
            authenticate(headers, store, None)


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, tokens=3, updated=0)
    assert [bucket.take(0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0
    limiter = RateLimiter(1, 1)
    assert (limiter.take("a", 0), limiter.take("b", 0)) == (0, 0)
    assert limiter.take("a", 0) > 0
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(2.1) == "3"


def tj(namespace: str, name: str, phase: str | None = None, created: str = "2025-01-01T00:00:00Z") -> dict:
    job: dict = {"metadata": {"namespace": namespace, "name": name, "creationTimestamp": created}, "spec": {}}
    if phase:
        job["status"] = {"phase": phase}
    return job


def test_waiting_jobs_count_pending_and_queued_of_one_namespace() -> None:
    found = [tj("a", "1"), tj("a", "2", "Queued"), tj("a", "3", "Running"), tj("b", "4", "Pending")]
    assert waiting_jobs(found, "a") == 2


def test_job_ids_and_file_names() -> None:
    assert jobs.is_job_id(jobs.new_job_id())
    assert not jobs.is_job_id("tj-../../etc")
    assert jobs.sanitize_filename("../../etc/passwd") == "passwd"
    assert jobs.sanitize_filename("C:\\audio\\talk.mp3") == "talk.mp3"
    assert jobs.sanitize_filename("a\x00b\nc.wav") == "abc.wav"
    assert jobs.sanitize_filename("...") == jobs.sanitize_filename(None) == "audio"
    long = jobs.sanitize_filename("z" * 500 + ".flac")
    assert len(long) == 200 and long.endswith(".flac")
    assert jobs.upload_key("ns", "tj-abc") == "uploads/ns/tj-abc/audio"
    assert jobs.UPLOADED_SOURCE_ANNOTATION == UPLOADED_SOURCE_ANNOTATION


def test_the_job_view() -> None:
    job = tj("a", "tj-1", "Failed")
    job["metadata"]["annotations"] = {jobs.FILENAME_ANNOTATION: "talk.mp3"}
    job["spec"] = {"model": "base", "outputs": {"formats": ["srt"]}}
    job["status"].update(reason="BadAudio", message="no samples", progress={"percent": 5})
    view = jobs.job_view(job)
    assert view["error"] == {"reason": "BadAudio", "message": "no samples"}
    assert view["progress"] == {"percent": 5, "processedSeconds": None, "durationSeconds": None, "etaSeconds": None}
    assert (view["phase"], view["task"], view["formats"], view["status_url"]) == (
        "Failed",
        "transcribe",
        ["srt"],
        "/v1/jobs/tj-1",
    )
    assert jobs.job_view(tj("a", "tj-2"))["phase"] == "Pending"
    assert jobs.transcript_filename(job, "srt") == "talk.srt"


def test_pages_go_newest_first_without_gaps_or_repeats() -> None:
    found = [tj("a", f"j{i}", created=f"2025-01-01T00:00:0{i % 3}Z") for i in range(7)]
    seen, after = [], None
    while True:
        chosen, token = jobs.page(found, 3, after)
        seen += [job["metadata"]["name"] for job in chosen]
        if token is None:
            break
        after = jobs.decode_page_token(token)
    assert sorted(seen) == sorted(j["metadata"]["name"] for j in found) and len(seen) == 7
    times = [next(j for j in found if j["metadata"]["name"] == n)["metadata"]["creationTimestamp"] for n in seen]
    assert times == sorted(times, reverse=True)
    assert jobs.decode_page_token("garbage") is None
    assert jobs.decode_page_token(base64.urlsafe_b64encode(b"[1, 2]").decode()) is None


def test_submissions_are_checked_before_anything_is_uploaded() -> None:
    assert parse_formats("json, srt,json") == ("json", "srt")
    for bad in ("", "docx", "json,,pdf"):
        with pytest.raises(ApiError):
            parse_formats(bad)
    spec = job_spec(Request(model="base", language="de", prompt="Names", temperature=0.2), "audio", "k", 0)
    assert (spec.options.initial_prompt, spec.options.temperature, spec.resources.gpu) == ("Names", 0.2, 0)
    with pytest.raises(ApiError) as error:
        job_spec(Request(model="tiny.en", task="translate"), "audio", "k", 1)
    assert error.value.status_code == 400


def test_openai_models_and_bodies() -> None:
    assert resolve_model("whisper-1", "transcribe", None, "tiny.en", "base") == "tiny.en"
    assert resolve_model("whisper-1", "transcribe", "de", "tiny.en", "base") == "base"
    assert resolve_model("whisper-1", "translate", None, "tiny.en", "base") == "base"
    assert resolve_model("small", "transcribe", None, "tiny.en", "base") == "small"
    assert resolve_model("gpt-4o", "transcribe", None, "tiny.en", "base") is None
    document = json.dumps(
        {
            "language": "en",
            "duration": 2.0,
            "segments": [
                {
                    "id": 1,
                    "start": 0,
                    "end": 2,
                    "text": " Hello there.",
                    "words": [{"word": " Hello", "start": 0, "end": 1, "probability": 0.9}],
                }
            ],
        }
    )
    assert render_json(document, "json", "transcribe", [], 0) == {"text": "Hello there."}
    verbose = render_json(document, "verbose_json", "transcribe", ["word"], 0)
    assert verbose["words"] == [{"word": "Hello", "start": 0, "end": 1}]
    assert "segments" not in verbose
    assert render_json(document, "verbose_json", "transcribe", [], 0)["segments"][0]["text"] == " Hello there."


def test_request_ids_are_kept_when_safe() -> None:
    assert choose_request_id("abc-123") == "abc-123"
    assert len(choose_request_id("bad id\n")) == 32
    assert len(choose_request_id(None)) == 32


class FakeStore:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.calls: list[str] = []
        self.headers: dict[str, str] = {}

    def _create_multipart_upload(self, bucket: str, key: str, headers: dict[str, str]) -> str:
        self.calls.append("create")
        self.headers = headers
        return "up-1"

    def _upload_part(self, bucket: str, key: str, data: bytes, headers: Any, upload_id: str, number: int) -> str:
        assert number == len(self.parts) + 1
        self.parts.append(data)
        return f"etag-{number}"

    def _complete_multipart_upload(self, bucket: str, key: str, upload_id: str, parts: list[Any]) -> None:
        self.calls.append(f"complete {[p.part_number for p in parts]}")

    def _abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.calls.append("abort")


def test_streaming_uploads_send_parts_as_the_file_fills_and_complete_only_when_committed() -> None:
    content = bytes(range(256)) * ((2 * PART_SIZE + 1000) // 256)
    store = FakeStore()
    with tempfile.TemporaryFile() as file:
        upload = StreamingUpload(store, "audio", "k", file, filename="a b.wav")  # type: ignore[arg-type]
        for start in range(0, len(content), 1 << 20):
            file.write(content[start : start + (1 << 20)])
            file.flush()
            upload.written(file.tell())
        upload.written(file.tell(), finished=True)
        upload.commit()
        upload.discard()
    assert b"".join(store.parts) == content
    assert [len(part) for part in store.parts] == [PART_SIZE, PART_SIZE, len(content) - 2 * PART_SIZE]
    assert store.calls == ["create", "complete [1, 2, 3]"]
    assert store.headers["x-amz-meta-filename"] == "a%20b.wav"

    store = FakeStore()
    with tempfile.TemporaryFile() as file:
        upload = StreamingUpload(store, "audio", "k", file, filename="a.wav")  # type: ignore[arg-type]
        file.write(content)
        file.flush()
        upload.written(PART_SIZE + 10)
        upload.discard()
        upload.discard()
    assert store.calls in (["create", "abort"], [])
    with pytest.raises(RuntimeError):
        upload.commit()
