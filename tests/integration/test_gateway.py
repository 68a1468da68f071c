"""The REST gateway, installed by the chart: uploads, jobs, transcripts, events, isolation and limits, against the
local cluster, MinIO and real transcriptions of espeak-ng speech."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import select
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Cluster, Gateway, Kubescribe, wait_for
from tests.integration.speech import PASSAGE, speak, word_error_rate

SENTENCE = "The operator watches every request and reports its progress until the work is done."
MAX_WER = 0.3
JOB_ID = re.compile(r"^tj-[a-z0-9]{12}$")


@pytest.fixture(scope="module")
def sentence(speech_dir: Path) -> Path:
    return speak(speech_dir, "sentence", SENTENCE)


def api(gateway: Gateway, namespace: str = "gw-a") -> httpx.Client:
    return httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.keys[namespace]}"}, timeout=60
    )


def submit(client: httpx.Client, path: Path, filename: str | None = None, **form: str) -> httpx.Response:
    with path.open("rb") as audio:
        return client.post("/v1/jobs", files={"file": (filename or path.name, audio)}, data=form)


def uploads(kubescribe: Kubescribe, namespace: str) -> list[str]:
    return [o.object_name for o in kubescribe.s3.list_objects("audio", prefix=f"{namespace}/uploads/", recursive=True)]


def events(client: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=180) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name:
                yield name, json.loads(line.removeprefix("data: "))


def event_lines(client: httpx.Client, job_id: str, last_event_id: str | None = None) -> list[str]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=180) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines() if line]


def test_a_job_is_submitted_followed_downloaded_and_deleted(
    gateway: Gateway, kubescribe: Kubescribe, speech_dir: Path
) -> None:
    wav = speak(speech_dir, "passage", PASSAGE)
    client = api(gateway)
    with wav.open("rb") as audio:
        response = client.post(
            "/v1/jobs",
            files={"file": ("talk.wav", audio)},
            data={"formats": "json,srt", "vad": "false", "model": "tiny.en", "language": "en"},
            headers={"X-Request-ID": "req-passage-1"},
        )
    assert response.status_code == 202, response.text
    view = response.json()
    job_id = view["id"]
    assert JOB_ID.match(job_id)
    assert response.headers["location"] == f"/v1/jobs/{job_id}" == view["status_url"]
    assert response.headers["x-request-id"] == "req-passage-1"
    assert (view["phase"], view["filename"], view["formats"]) == ("Pending", "talk.wav", ["json", "srt"])

    tj = kubescribe.job("gw-a", job_id)
    assert tj is not None
    assert tj["metadata"]["labels"]["kubescribe.io/submitted-by"] == "gateway"
    annotations = tj["metadata"]["annotations"]
    assert annotations["kubescribe.io/uploaded-source"] == "true"
    assert annotations["kubescribe.io/request-id"] == "req-passage-1"
    assert annotations["kubescribe.io/filename"] == "talk.wav"
    key = f"gw-a/uploads/{job_id}/audio"
    assert tj["spec"]["source"]["s3"] == {"bucket": "audio", "key": key}
    assert kubescribe.s3.stat_object("audio", key).metadata["x-amz-meta-filename"] == "talk.wav"

    early = client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "json"})
    assert early.status_code == 409, early.text

    seen = list(events(client, job_id))
    names = [name for name, _ in seen]
    assert names[-1] == "end" and names.count("end") == 1
    phases = [data["phase"] for name, data in seen if name == "status"]
    assert phases[-1] == "Succeeded"
    assert "Running" in phases
    percents = [data["progress"]["percent"] for name, data in seen if name == "status" and data["progress"]]
    assert any(0 < p < 100 for p in percents), percents
    assert seen[-1][1]["phase"] == "Succeeded"

    final = client.get(f"/v1/jobs/{job_id}").json()
    assert final["phase"] == "Succeeded"
    again = event_lines(client, job_id)
    assert again[:2] == [again[0], "event: status"] and again[0].startswith("id: ")
    # A client reconnecting with the id of the state it has is told only that the stream ended.
    assert event_lines(client, job_id, again[0].removeprefix("id: "))[0] == "event: end"
    assert set(final["result"]["outputs"]) == {"json", "srt"}
    assert final["error"] is None

    srt = client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "srt"})
    assert srt.status_code == 200
    assert srt.headers["content-type"].startswith("application/x-subrip")
    assert srt.headers["content-disposition"].startswith('attachment; filename="talk.srt"')
    document = client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "json"}).json()
    text = " ".join(segment["text"] for segment in document["segments"])
    assert word_error_rate(PASSAGE, text) < MAX_WER
    assert client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "txt"}).status_code == 404

    listed = client.get("/v1/jobs", params={"phase": "Succeeded"}).json()
    assert job_id in [job["id"] for job in listed["jobs"]]
    assert client.get("/v1/jobs", params={"phase": "Queued"}).json()["jobs"] == []

    deleted = client.delete(f"/v1/jobs/{job_id}")
    assert deleted.status_code == 202
    assert deleted.json()["id"] == job_id
    wait_for(lambda: kubescribe.job("gw-a", job_id) is None, 60, "the job to go")
    assert key not in uploads(kubescribe, "gw-a")
    assert not kubescribe.exists(final["result"]["outputs"]["json"])
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_pagination_lists_newest_first(gateway: Gateway, kubescribe: Kubescribe, sentence: Path) -> None:
    client = api(gateway, "gw-b")
    ids = []
    for _ in range(3):
        time.sleep(1.1)  # creation times have a resolution of one second
        response = submit(client, sentence)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    seen, token = [], None
    while True:
        page = client.get("/v1/jobs", params={"limit": 2, **({"page_token": token} if token else {})}).json()
        seen += [job["id"] for job in page["jobs"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert [i for i in seen if i in ids] == ids[::-1]
    assert len(seen) == len(set(seen))
    created = [job["created"] for job in client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
    assert created == sorted(created, reverse=True)
    assert client.get("/v1/jobs", params={"page_token": "not-a-token"}).status_code == 400
    for job_id in ids:
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 202


def test_a_key_sees_only_its_own_namespace(gateway: Gateway, kubescribe: Kubescribe, sentence: Path) -> None:
    mine, theirs = api(gateway, "gw-a"), api(gateway, "gw-b")
    job_id = submit(mine, sentence).json()["id"]
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/transcript"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ]:
        response = theirs.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["type"] == "not_found_error"
    assert job_id not in [job["id"] for job in theirs.get("/v1/jobs").json()["jobs"]]
    assert kubescribe.job("gw-a", job_id) is not None
    assert mine.get(f"/v1/jobs/{job_id}").status_code == 200
    assert mine.delete(f"/v1/jobs/{job_id}").status_code == 202


def test_requests_without_a_valid_key_are_refused(gateway: Gateway) -> None:
    anonymous = httpx.Client(base_url=gateway.url)
    for headers in ({}, {"Authorization": "Bearer ks_wrong"}, {"X-API-Key": "nope"}, {"Authorization": "Basic x"}):
        response = anonymous.get("/v1/jobs", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    response = anonymous.get("/v1/jobs", headers={"X-API-Key": gateway.keys["gw-a"]})
    assert response.status_code == 200

    # An upload from an unknown caller is refused before its body is read: the answer comes with none sent.
    connection = http.client.HTTPConnection(gateway.url.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/v1/jobs")
    connection.putheader("Authorization", "Bearer ks_wrong")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(gateway.max_upload_bytes // 2))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 401
    assert json.loads(answer.read())["error"]["type"] == "authentication_error"
    connection.close()


def test_invalid_requests_are_answered_with_errors(gateway: Gateway, sentence: Path) -> None:
    client = api(gateway)
    assert client.get("/v1/jobs/tj-000000000000").status_code == 404
    assert client.get("/v1/jobs/..%2F..%2Fsecrets").status_code == 404
    for form, param in [
        ({"formats": "json,docx"}, "formats"),
        ({"model": "gpt-4"}, "model"),
        # Names a job could name, but not on the cluster's list of models.
        ({"model": "large-v2"}, "model"),
        ({"model": "org/any-repo"}, "model"),
        ({"model": "s3://audio/"}, "model"),
        ({"language": "english"}, "language"),
        ({"task": "summarize"}, "task"),
        ({"task": "translate", "model": "tiny.en"}, None),
        ({"webhook_url": "ftp://example.org"}, "webhook_url"),
    ]:
        response = submit(client, sentence, **form)
        assert response.status_code == 400, (form, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        if param:
            assert error["param"] == param, error
    assert client.post("/v1/jobs", files={"model": (None, "tiny.en")}).status_code == 400
    assert client.get("/v1/jobs", params={"limit": 0}).status_code == 400


def test_uploads_that_are_not_multipart_forms_are_refused_unread(gateway: Gateway) -> None:
    for path in ("/v1/jobs", "/v1/audio/transcriptions", "/v1/audio/translations"):
        for content_type in ("application/json", "application/x-www-form-urlencoded", None):
            # The answer comes with none of the body sent.
            connection = http.client.HTTPConnection(gateway.url.removeprefix("http://"), timeout=30)
            connection.putrequest("POST", path)
            connection.putheader("Authorization", f"Bearer {gateway.keys['gw-a']}")
            if content_type:
                connection.putheader("Content-Type", content_type)
            connection.putheader("Content-Length", str(gateway.max_upload_bytes // 2))
            connection.endheaders()
            answer = connection.getresponse()
            assert answer.status == 415, (path, content_type)
            assert json.loads(answer.read())["error"]["type"] == "invalid_request_error"
            connection.close()


def riff_header(data_bytes: int) -> bytes:
    """A 16 kHz mono 16-bit WAV header announcing `data_bytes` of samples."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def test_bad_uploads_leave_nothing_behind(
    gateway: Gateway, kubescribe: Kubescribe, sentence: Path, tmp_path: Path
) -> None:
    client = api(gateway, "gw-b")
    before_jobs = {job["metadata"]["name"] for job in kubescribe.cluster.get("tj", "-n", "gw-b")["items"]}
    before_objects = set(uploads(kubescribe, "gw-b"))
    speech = sentence.read_bytes()
    cases = {
        "notes.wav": (b"these are meeting notes, not a recording\n" * 100, 415),
        "empty.wav": (b"", 415),
        "header-only.wav": (speech[:44], 415),
        "cut-in-header.wav": (speech[:30], 415),
        "a-few-samples.wav": (speech[:60], 415),
        "random.mp3": (bytes(range(256)) * 64, 415),
        "../../etc/passwd": (b"root:x:0:0:root:/root:/bin/bash\n", 415),
        "x" * 5000 + ".wav": (b"not audio" * 10, 400),  # a header line too long for the multipart parser
        "r\u00e9sum\u00e9 \u65e5\u672c.wav": (b"not audio" * 10, 415),
        "nul\x00byte.wav": (b"not audio" * 10, 415),
    }
    for name, (content, status) in cases.items():
        response = client.post("/v1/jobs", files={"file": (name, content)})
        assert response.status_code == status, (name[:40], response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"

    twice = client.post("/v1/jobs", files=[("file", ("one.wav", speech)), ("file", ("two.wav", speech))])
    assert twice.status_code == 400, twice.text
    assert twice.json()["error"]["param"] == "file"

    oversized = tmp_path / "big.wav"
    size = gateway.max_upload_bytes + (2 << 20)
    with oversized.open("wb") as file:
        file.write(riff_header(size - 44))
        file.truncate(size)
    with oversized.open("rb") as audio:
        response = client.post("/v1/jobs", files={"file": ("big.wav", audio)})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"

    # Told by Content-Length: refused before the body is read.
    connection = http.client.HTTPConnection(gateway.url.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/v1/jobs")
    connection.putheader("Authorization", f"Bearer {gateway.keys['gw-b']}")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(50 << 30))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413
    connection.close()

    # Counted while streaming: no Content-Length.
    def chunked() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        yield riff_header(size)
        for _ in range(size // (1 << 20)):
            yield bytes(1 << 20)
        yield b"\r\n--x--\r\n"

    try:
        streamed = client.post(
            "/v1/jobs", content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=x"}
        ).status_code
    except httpx.TransportError:
        streamed = 413  # the gateway may close the connection before the client finished sending
    assert streamed == 413

    assert {job["metadata"]["name"] for job in kubescribe.cluster.get("tj", "-n", "gw-b")["items"]} == before_jobs
    assert set(uploads(kubescribe, "gw-b")) == before_objects


def test_hostile_file_names_are_kept_only_as_sanitized_names(
    gateway: Gateway, kubescribe: Kubescribe, sentence: Path
) -> None:
    client = api(gateway, "gw-b")
    names = {
        "../../etc/passwd": "passwd",
        "..\\..\\windows\\win.ini": "win.ini",
        "nul\x00byte.wav": "nul%00byte.wav",  # httpx escapes the NUL; the gateway keeps the escape as text
        "r\u00e9sum\u00e9 \u65e5\u672c.wav": "r\u00e9sum\u00e9 \u65e5\u672c.wav",
        "y" * 1000 + ".wav": "y" * 196 + ".wav",
        "...": "audio",
    }
    for raw, expected in names.items():
        response = submit(client, sentence, raw)
        assert response.status_code == 202, (raw[:40], response.text, gateway.log_of(response))
        job_id = response.json()["id"]
        assert response.json()["filename"] == expected
        tj = kubescribe.job("gw-b", job_id)
        assert tj is not None
        assert tj["metadata"]["annotations"]["kubescribe.io/filename"] == expected
        assert tj["spec"]["source"]["s3"]["key"] == f"gw-b/uploads/{job_id}/audio"
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 202
    assert not [o.object_name for o in kubescribe.s3.list_objects("audio", recursive=True) if "passwd" in o.object_name]


def test_uploads_stream_with_bounded_memory(gateway: Gateway, kubescribe: Kubescribe, tmp_path: Path) -> None:
    size = gateway.max_upload_bytes - (1 << 20)
    big = tmp_path / "long.wav"
    with big.open("wb") as file:
        file.write(riff_header(size - 44))
        file.truncate(size)

    def peak_rss() -> int:
        status = Path(f"/proc/{gateway.kubescribe.component_pid('gateway')}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]

    before = peak_rss()
    response = submit(api(gateway, "gw-b"), big, "long.wav")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert kubescribe.s3.stat_object("audio", f"gw-b/uploads/{job_id}/audio").size == size
    api(gateway, "gw-b").delete(f"/v1/jobs/{job_id}")
    assert peak_rss() - before < 32 << 20, f"the gateway grew by {(peak_rss() - before) >> 20} MiB for {size >> 20} MiB"


def test_the_rate_limit_answers_429_with_retry_after(gateway: Gateway) -> None:
    client = httpx.Client(base_url=gateway.url, headers={"X-API-Key": gateway.create_key("gw-c", "burst")}, timeout=30)
    wait_for(lambda: client.get("/v1/models").status_code == 200, 30, "the new key to be read")
    statuses: list[httpx.Response] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(25):
            response = client.get("/v1/models")
            with lock:
                statuses.append(response)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["type"] == "rate_limit_error"
    assert sum(r.status_code == 200 for r in statuses) >= gateway.rate_burst


def test_failed_authentications_are_limited_per_address(gateway: Gateway) -> None:
    client = httpx.Client(base_url=gateway.url, timeout=30)
    answers = [
        client.get("/v1/jobs", headers={"X-API-Key": f"ks_wrong{i}"}) for i in range(2 * gateway.failed_auth_burst)
    ]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert int(limited[0].headers["retry-after"]) >= 1
    error = limited[0].json()["error"]
    assert error["type"] == "rate_limit_error" and "failed authentications" in error["message"]
    assert "ks_wrong" not in limited[0].text
    # A known key still works from the same address.
    assert client.get("/v1/jobs", headers={"X-API-Key": gateway.keys["gw-a"]}).status_code == 200
    time.sleep(gateway.failed_auth_burst / gateway.failed_auth_per_second)  # the bucket refills for the tests after


def held_upload(gateway: Gateway, key: str, path: str) -> http.client.HTTPConnection:
    """An upload whose body is announced but never sent: it stays open until the connection is closed."""
    connection = http.client.HTTPConnection(gateway.url.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", path)
    connection.putheader("Authorization", f"Bearer {key}")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(1 << 20))
    connection.endheaders(b"--x\r\n")
    return connection


def test_open_uploads_waits_and_event_streams_are_capped_per_caller(
    gateway: Gateway, cluster: Cluster, namespace: str
) -> None:
    key = gateway.create_key(namespace, "caps")
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    wait_for(lambda: client.get("/v1/models").status_code == 200, 30, "the new key to be read")
    not_audio = {"file": ("notes.txt", b"not audio at all" * 10)}

    for path, cap, form in (
        ("/v1/jobs", gateway.max_uploads, {}),
        ("/v1/audio/transcriptions", gateway.max_waits, {"model": "whisper-1"}),
    ):
        # One more than the cap, all left open: exactly one is answered, 429, however the gateway ordered them.
        held = [held_upload(gateway, key, path) for _ in range(cap + 1)]
        sockets = [connection.sock for connection in held]
        select.select(sockets, [], [], 30)
        time.sleep(1)  # time for any other to be answered too
        answered, _, _ = select.select(sockets, [], [], 0)
        assert len(answered) == 1, f"{len(answered)} of {cap + 1} open {path} requests were answered"
        refused = next(connection for connection in held if connection.sock is answered[0]).getresponse()
        assert refused.status == 429
        assert int(refused.getheader("retry-after", "0")) >= 1
        assert json.loads(refused.read())["error"]["code"] == "too_many_concurrent_requests"
        for connection in held:
            connection.close()

        def post(path: str = path, form: dict[str, str] = form) -> httpx.Response:
            """An upload of the caller that is answered at once: 415, not audio, once it is let through."""
            return client.post(path, files=not_audio, data=form)

        wait_for(lambda: post().status_code == 415, 30, f"the open {path} requests to be released")

    # A job that never runs, so that its event stream stays open.
    stuck = "tj-stuck0000000"
    never = {"gpu": 0, "nodeSelector": {"kubescribe.io/no-such-node": "true"}}
    cluster.apply(
        {
            "apiVersion": "kubescribe.io/v1alpha1",
            "kind": "TranscriptionJob",
            "metadata": {"name": stuck, "namespace": namespace, "labels": {"kubescribe.io/submitted-by": "gateway"}},
            "spec": {"source": {"url": "https://example.org/a.wav"}, "resources": never},
        }
    )
    wait_for(lambda: client.get(f"/v1/jobs/{stuck}").status_code == 200, 30, "the gateway to see the job")
    with contextlib.ExitStack() as streams:
        for _ in range(gateway.max_event_streams):
            assert streams.enter_context(client.stream("GET", f"/v1/jobs/{stuck}/events")).status_code == 200
        refused = client.get(f"/v1/jobs/{stuck}/events")
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert "event streams" in refused.json()["error"]["message"]

    def stream_opens() -> bool:
        with client.stream("GET", f"/v1/jobs/{stuck}/events") as response:
            return response.status_code == 200

    wait_for(stream_opens, 30, "the closed event streams to be released")


def test_too_many_waiting_jobs_answer_429(
    gateway: Gateway, kubescribe: Kubescribe, cluster: Cluster, sentence: Path
) -> None:
    # A job holding the namespace's GPU quota on no node, so the others stay Queued.
    never = {"nodeSelector": {"kubescribe.io/no-such-node": "true"}}
    kubescribe.submit("gw-c", "hog", source={"url": "https://example.org/a.wav"}, resources={"gpu": 4, **never})
    for index in range(gateway.max_queued_jobs):
        kubescribe.submit("gw-c", f"wait-{index}", source={"url": "https://example.org/a.wav"}, resources={"gpu": 1})
    try:
        wait_for(
            lambda: all(
                (kubescribe.job("gw-c", f"wait-{i}") or {}).get("status", {}).get("phase") == "Queued"
                for i in range(gateway.max_queued_jobs)
            ),
            60,
            "the jobs to queue",
        )
        response = submit(api(gateway, "gw-c"), sentence)
        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "too_many_queued_jobs"
        assert not uploads(kubescribe, "gw-c")
    finally:
        cluster.kubectl("delete", "tj", "--all", "-n", "gw-c", "--wait=false")


def test_health_readiness_and_metrics(gateway: Gateway) -> None:
    client = httpx.Client(base_url=gateway.url)
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"kubernetes": True, "s3": True, "watch": True, "keys": True}
    assert client.get("/metrics").status_code == 404
    metrics = httpx.get(gateway.metrics_url).text
    assert "kubescribe_gateway_requests_total" in metrics
    assert "kubescribe_gateway_uploaded_bytes_total" in metrics
    schema = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/audio/transcriptions", "/v1/models"} <= set(schema["paths"])


def test_every_response_has_the_security_headers(gateway: Gateway) -> None:
    client = httpx.Client(base_url=gateway.url)
    for response in (client.get("/"), client.get("/app.js"), client.get("/v1/jobs"), client.get("/healthz")):
        assert "default-src 'self'" in response.headers["content-security-policy"], response.url
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "https://cdn.jsdelivr.net" in client.get("/docs").headers["content-security-policy"]


def test_kubernetes_tokens_are_reviewed(
    gateway: Gateway, kubescribe: Kubescribe, cluster: Cluster, sentence: Path
) -> None:
    for account in ("submitter", "onlooker", "reader"):
        cluster.kubectl("create", "serviceaccount", account, "-n", "gw-b")
    resource = "--resource=transcriptionjobs.kubescribe.io"
    cluster.kubectl("create", "role", "submit", "-n", "gw-b", "--verb=create,get,list,delete", resource)
    cluster.kubectl("create", "role", "read", "-n", "gw-b", "--verb=get,list", resource)
    cluster.kubectl("create", "rolebinding", "submit", "-n", "gw-b", "--role=submit", "--serviceaccount=gw-b:submitter")
    cluster.kubectl("create", "rolebinding", "read", "-n", "gw-b", "--role=read", "--serviceaccount=gw-b:reader")
    token, other, reader = (
        cluster.kubectl("create", "token", account, "-n", "gw-b").stdout.strip()
        for account in ("submitter", "onlooker", "reader")
    )

    def client(bearer: str, namespace: str = "gw-b") -> httpx.Client:
        headers = {"Authorization": f"Bearer {bearer}", "X-Kubescribe-Namespace": namespace}
        return httpx.Client(base_url=gateway.url, headers=headers, timeout=60)

    assert client(token).get("/v1/jobs").status_code == 200
    assert client(token, "gw-a").get("/v1/jobs").status_code == 403
    assert client(other).get("/v1/jobs").status_code == 403
    assert client(token[:-4] + "AAAA").get("/v1/jobs").status_code == 401

    created = submit(client(token), sentence)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    annotations = kubescribe.job("gw-b", job_id)["metadata"]["annotations"]  # type: ignore[index]
    assert annotations["kubescribe.io/requested-by"] == "system:serviceaccount:gw-b:submitter"

    # A reader may list and get, but not create, follow, or delete.
    assert client(reader).get("/v1/jobs").status_code == 200
    assert client(reader).get(f"/v1/jobs/{job_id}").status_code == 200
    refused = submit(client(reader), sentence)
    assert refused.status_code == 403, refused.text
    assert "may not create" in refused.json()["error"]["message"]
    assert client(reader).get(f"/v1/jobs/{job_id}/events").status_code == 403
    assert client(reader).delete(f"/v1/jobs/{job_id}").status_code == 403
    assert client(token).delete(f"/v1/jobs/{job_id}").status_code == 202
