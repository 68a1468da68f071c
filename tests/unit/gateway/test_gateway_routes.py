"""What the API answers: job views, pages, OpenAI's shapes, request ids."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import uvicorn
from fastapi.testclient import TestClient
from faster_whisper.tokenizer import _LANGUAGE_CODES

from kubescribe.api.v1alpha1 import Task
from kubescribe.gateway.app import create_app
from kubescribe.gateway.intake.resource import FILENAME_ANNOTATION
from kubescribe.gateway.middleware import choose_request_id, content_security_policy, security_headers
from kubescribe.gateway.routes import views
from kubescribe.gateway.routes.document import allowed_methods
from kubescribe.gateway.routes.languages import LANGUAGE_NAMES
from kubescribe.gateway.routes.openai_views import render_json, resolve_model
from kubescribe.gateway.settings import GatewaySettings


def tj(namespace: str, name: str, phase: str | None = None, created: str = "2025-01-01T00:00:00Z") -> dict:
    job: dict = {"metadata": {"namespace": namespace, "name": name, "creationTimestamp": created}, "spec": {}}
    if phase:
        job["status"] = {"phase": phase}
    return job


def test_the_job_view() -> None:
    job = tj("a", "tj-1", "Failed")
    job["metadata"]["annotations"] = {FILENAME_ANNOTATION: "talk.mp3"}
    job["spec"] = {"model": "base", "outputs": {"formats": ["srt"]}}
    job["status"].update(reason="BadAudio", message="no samples", progress={"percent": 5})
    view = views.job_view(job)
    assert view["error"] == {"reason": "BadAudio", "message": "no samples"}
    assert view["progress"] == {"percent": 5, "processedSeconds": None, "durationSeconds": None, "etaSeconds": None}
    assert (view["phase"], view["task"], view["formats"], view["status_url"]) == (
        "Failed",
        "transcribe",
        ["srt"],
        "/v1/jobs/tj-1",
    )
    assert views.job_view(tj("a", "tj-2"))["phase"] == "Pending"
    assert views.transcript_filename(job, "srt") == "talk.srt"


def finished_job(outputs: dict[str, str], **spec_outputs: object) -> dict:
    job = tj("a", "tj-1", "Succeeded")
    source = {"s3": {"bucket": "audio", "key": "uploads/a/tj-1/audio"}}
    job["spec"] = {"source": source, "outputs": {"formats": ["json", "txt"], **spec_outputs}}
    job["status"]["result"] = {"outputs": outputs}
    return job


def test_only_the_jobs_own_transcripts_are_served() -> None:
    own = {"json": "s3://transcripts/a/tj-1/audio.json", "txt": "s3://transcripts/a/tj-1/audio.txt"}
    job = finished_job(own)
    assert views.transcript_uri(job, "txt", "transcripts") == own["txt"]
    assert views.transcript_uri(job, "srt", "transcripts") is None
    assert views.transcript_uri(job, "txt", "elsewhere") is None
    forged = finished_job({"json": "s3://transcripts/b/tj-9/audio.json", "txt": "s3://audio/uploads/b/tj-9/audio"})
    assert views.transcript_uri(forged, "json", "transcripts") is None
    assert views.transcript_uri(forged, "txt", "transcripts") is None
    # A spec may name any place in the store: its transcripts are not the gateway's to serve.
    named = finished_job({"txt": "s3://transcripts/b/x/audio.txt"}, s3={"bucket": "transcripts", "prefix": "b/x/"})
    assert views.transcript_uri(named, "txt", "transcripts") is None
    assert views.transcript_uri({**job, "spec": {"source": "not a source"}}, "txt", "transcripts") is None


def test_pages_go_newest_first_without_gaps_or_repeats() -> None:
    found = [tj("a", f"j{i}", created=f"2025-01-01T00:00:0{i % 3}Z") for i in range(7)]
    seen, after = [], None
    while True:
        chosen, token = views.page(found, 3, after)
        seen += [job["metadata"]["name"] for job in chosen]
        if token is None:
            break
        after = views.decode_page_token(token)
    assert sorted(seen) == sorted(j["metadata"]["name"] for j in found) and len(seen) == 7
    times = [next(j for j in found if j["metadata"]["name"] == n)["metadata"]["creationTimestamp"] for n in seen]
    assert times == sorted(times, reverse=True)
    assert re.match(views.PAGE_TOKEN, views.encode_page_token(("2025-01-01T00:00:02Z", "tj-4k2m9x0q7a1b")))
    assert not re.match(views.PAGE_TOKEN, "garbage")


def test_openai_models_and_bodies() -> None:
    assert resolve_model("whisper-1", "transcribe", None, "tiny.en", "base") == "tiny.en"
    assert resolve_model("whisper-1", "transcribe", "de", "tiny.en", "base") == "base"
    assert resolve_model("whisper-1", "translate", None, "tiny.en", "base") == "base"
    assert resolve_model("small", "transcribe", None, "tiny.en", "base") == "small"
    assert resolve_model("gpt-4o", "transcribe", None, "tiny.en", "base") == "gpt-4o"
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


def test_verbose_json_names_the_language_as_openai_does() -> None:
    def language(code: str, task: Task) -> str:
        document = json.dumps({"language": code, "duration": 1.0, "segments": []})
        return str(render_json(document, "verbose_json", task, [], 0)["language"])

    assert (language("en", "transcribe"), language("de", "transcribe"), language("yue", "transcribe")) == (
        "english",
        "german",
        "cantonese",
    )
    assert language("de", "translate") == "english"  # the language of the text, as OpenAI has it
    assert set(LANGUAGE_NAMES) == set(_LANGUAGE_CODES)
    assert all(name == name.lower() for name in LANGUAGE_NAMES.values())


def test_request_ids_are_kept_when_safe() -> None:
    assert choose_request_id("abc-123") == "abc-123"
    assert len(choose_request_id("bad id\n")) == 32
    assert len(choose_request_id(None)) == 32


def test_every_response_has_the_security_headers() -> None:
    headers = dict(security_headers("/v1/jobs"))
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"referrer-policy"] == b"no-referrer"
    page = content_security_policy("/")
    assert "default-src 'self'" in page and "frame-ancestors 'none'" in page
    assert "unsafe-inline" not in page and "http" not in page
    assert headers[b"content-security-policy"] == page.encode()
    docs = content_security_policy("/docs")
    assert "https://cdn.jsdelivr.net" in docs and "frame-ancestors 'none'" in docs
    assert content_security_policy("/redoc") == docs


def app_client(**settings: Any) -> TestClient:
    """The gateway's application, without the stores its routes use: enough for its document and its routing."""
    watcher = SimpleNamespace(start=lambda: None, stop=lambda: None)
    gateway = SimpleNamespace(settings=GatewaySettings(**settings), watcher=watcher)
    return TestClient(create_app(gateway, None))  # type: ignore[arg-type]


def test_the_document_lists_every_error_in_the_error_shape() -> None:
    document = app_client(models=["tiny.en", "base"]).get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]["$ref"]
                    assert schema.endswith(("/ErrorBody", "/NotReady")), (method, path, status)
            if path.startswith("/v1/"):
                assert {"401", "403", "429", "503"} <= set(operation["responses"]), (method, path)
                assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert set(document["components"]["schemas"]["NotReady"]["properties"]) >= {"error", "checks"}


def test_the_document_names_the_models_each_form_takes() -> None:
    schemas = app_client(models=["tiny.en", "base"]).get("/openapi.json").json()["components"]["schemas"]
    forms = {name: schema for name, schema in schemas.items() if name.startswith("Body_")}
    models = {name.split("_v1_")[0]: form["properties"]["model"]["enum"] for name, form in forms.items()}
    assert models == {
        "Body_create_job": ["", "tiny.en", "base"],
        "Body_transcriptions": ["whisper-1", "tiny.en", "base"],
        "Body_translations": ["whisper-1", "base"],
    }
    job_form = forms["Body_create_job_v1_jobs_post"]
    assert job_form["anyOf"][1]["properties"]["model"]["enum"] == ["base"]  # translate: the default is English only
    assert (
        "anyOf"
        not in app_client(default_model="base")
        .get("/openapi.json")
        .json()["components"]["schemas"]["Body_create_job_v1_jobs_post"]
    )


def test_a_method_a_path_does_not_take_is_answered_405_with_allow() -> None:
    client = app_client()
    answers = {
        ("OPTIONS", "/v1/jobs"): "GET, POST",
        ("PUT", "/v1/jobs/tj-4k2m9x0q7a1b"): "DELETE, GET",
        ("GET", "/v1/audio/translations"): "POST",  # not the web page's 404
        ("HEAD", "/v1/models"): "GET",
        ("POST", "/app.js"): "GET, HEAD",  # the web page's files
    }
    for (method, path), allow in answers.items():
        response = client.request(method, path)
        assert (response.status_code, response.headers["allow"]) == (405, allow), (method, path)
        assert method == "HEAD" or response.json()["error"]["type"] == "invalid_request_error"
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert allowed_methods({"/v1/jobs/{job_id}": {"get": {}, "delete": {}}}, "/v1/jobs/x/transcript") is None


def exchange(connection: socket.socket, path: str) -> tuple[int, dict[str, Any]]:
    """One GET on an open keep-alive connection: the answer's status and JSON body."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer key\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"the connection was closed before the answer to {path}"
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += connection.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_an_unexpected_error_answers_500_in_the_error_shape_and_the_connection_serves_on() -> None:
    watcher = SimpleNamespace(start=lambda: None, stop=lambda: None)
    gateway = SimpleNamespace(settings=GatewaySettings(), watcher=watcher)
    app = create_app(gateway, None)  # type: ignore[arg-type]  # no access: each authenticated route fails
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        status, body = exchange(connection, "/v1/jobs")
        assert (status, body["error"]["type"]) == (500, "server_error")
        assert "request id" in body["error"]["message"] and "Attribute" not in body["error"]["message"]
        assert exchange(connection, "/healthz") == (200, {"status": "ok"})
    server.should_exit = True


def wait_until(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
