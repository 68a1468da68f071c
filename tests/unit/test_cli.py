"""The CLI's pure parts, and the whole `transcribe` flow against a small stand-in gateway on loopback."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubescribe import cli
from kubescribe.cli import SseEvent, parse_sse, render_bar, render_progress


def test_sse_parser_joins_data_lines_and_skips_comments() -> None:
    stream = [
        ": keep-alive\n",
        "event: status\n",
        'data: {"a":\n',
        "data: 1}\n",
        "\n",
        "retry: 1000\n",
        "data:plain\r\n",
        "\r\n",
        "event: end\n",
        "data: {}\n",
        "\n",
    ]
    assert list(parse_sse(stream)) == [
        SseEvent("status", '{"a":\n1}'),
        SseEvent("message", "plain"),
        SseEvent("end", "{}"),
    ]


def test_sse_parser_drops_an_unfinished_event_and_events_without_data() -> None:
    assert list(parse_sse(["event: status\n", "\n", "event: status\n", "data: x\n"])) == []


def test_bar_is_clamped() -> None:
    assert render_bar(0.5, 10) == "[#####-----]"
    assert render_bar(1.7, 4) == "[####]"
    assert render_bar(-1, 4) == "[----]"


def test_progress_of_a_running_job() -> None:
    job = {
        "phase": "Running",
        "progress": {"percent": 50.0, "processedSeconds": 30, "durationSeconds": 60, "etaSeconds": 95},
    }
    assert render_progress(job, 10) == "Running   [#####-----]  50%  30 s of 1m00s, about 1m35s left"


@pytest.mark.parametrize(
    ("job", "line"),
    [
        ({"phase": "Queued", "progress": None}, "Queued"),
        ({"phase": None}, "Pending"),
        ({"phase": "Running", "progress": None}, "Running   [----]"),
        ({"phase": "Succeeded", "progress": {"percent": 98.0, "etaSeconds": 1}}, "Succeeded [####] 100%"),
        ({"phase": "Failed", "progress": {"percent": 50.0}}, "Failed    [##--]  50%"),
    ],
)
def test_progress_of_other_phases(job: dict[str, Any], line: str) -> None:
    assert render_progress(job, 4) == line


def test_progress_line_off_a_terminal_writes_phase_changes_only() -> None:
    stream = io.StringIO()
    line = cli.ProgressLine(stream)
    for text in ("Queued", "Running   [--] 1%", "Running   [#-] 50%", "Succeeded [##] 100%"):
        line.show(text)
    line.close()
    assert stream.getvalue().splitlines() == ["Queued", "Running   [--] 1%", "Succeeded [##] 100%"]


def test_summary_and_table() -> None:
    job = {
        "id": "tj-1",
        "namespace": "team-a",
        "phase": "Succeeded",
        "filename": "talk.mp3",
        "model": "small",
        "task": "transcribe",
        "language": None,
        "formats": ["srt", "json"],
        "result": {
            "language": "en",
            "languageProbability": 0.98,
            "durationSeconds": 75,
            "outputs": {"srt": "s3://t/x"},
        },
        "error": None,
    }
    summary = cli.describe_job(job)
    assert "language:   detect" in summary
    assert "detected:   en (98%)" in summary
    assert "duration:   1m15s" in summary
    assert "output srt: s3://t/x" in summary
    table = cli.jobs_table([job, {"id": "tj-22", "phase": "Running", "progress": {"percent": 12.4}}]).splitlines()
    assert table[0].split() == ["ID", "PHASE", "PROGRESS", "MODEL", "CREATED", "FILE"]
    assert table[1].split() == ["tj-1", "Succeeded", "100%", "small", "talk.mp3"]
    assert table[2].split() == ["tj-22", "Running", "12%"]


def test_arguments() -> None:
    args = cli.build_parser().parse_args(
        ["transcribe", "talk.mp3", "--model", "small", "--format", "srt", "-o", "talk.srt", "--no-vad"]
    )
    assert (args.audio, args.model, args.format, args.output, args.vad, args.task) == (
        "talk.mp3",
        "small",
        "srt",
        "talk.srt",
        False,
        None,
    )
    assert cli._transcript_format(cli.build_parser().parse_args(["transcript", "x", "-o", "a.vtt"])) == "vtt"
    assert cli._transcript_format(cli.build_parser().parse_args(["transcript", "x", "-o", "a.mp3"])) == "txt"
    keys = cli.build_parser().parse_args(["keys", "create", "--namespace", "team-a", "--name", "alice"])
    assert (keys.secret_namespace, keys.secret_name, keys.handler) == (
        "kubescribe",
        "kubescribe-api-keys",
        cli.cmd_keys_create,
    )
    for wrong in (["jobs", "--phase", "Done"], ["jobs", "--limit", "0"], ["keys", "revoke", "--name", "alice"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(wrong)


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(cli.ENV_GATEWAY, raising=False)
    monkeypatch.setenv(cli.ENV_API_KEY, "ks_secret")
    assert cli.main(["jobs"]) == 1
    assert "KUBESCRIBE_GATEWAY_URL" in capsys.readouterr().err
    monkeypatch.setenv(cli.ENV_GATEWAY, "http://127.0.0.1:9")
    monkeypatch.delenv(cli.ENV_API_KEY)
    assert cli.main(["jobs"]) == 1
    assert "KUBESCRIBE_API_KEY" in capsys.readouterr().err


class FakeGateway(BaseHTTPRequestHandler):
    """Accepts one upload, reports it Running then Succeeded over SSE, and serves its transcript."""

    key = "ks_secret"
    uploads: list[dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.key}":
            return True
        self.reply(401, {"error": {"message": "invalid API key", "type": "unauthorized"}})
        return False

    def view(self, phase: str, percent: float | None = None) -> dict[str, Any]:
        progress = None if percent is None else {"percent": percent, "processedSeconds": 1, "durationSeconds": 2}
        return {"id": "tj-1", "phase": phase, "progress": progress, "error": None}

    def do_POST(self) -> None:
        if not self.authorized():
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        upload = {name: part.get_payload(decode=True) for name, part in parts.items()}
        upload["filename"] = parts["file"].get_filename()
        self.uploads.append(upload)
        self.reply(202, self.view("Pending"))

    def do_GET(self) -> None:
        if not self.authorized():
            return
        if self.path == "/v1/jobs/tj-1/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for view in (self.view("Queued"), self.view("Running", 50), self.view("Succeeded", 100)):
                self.wfile.write(f": ping\n\nevent: status\ndata: {json.dumps(view)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"event: end\ndata: {}\n\n")
        elif self.path == "/v1/jobs/tj-1/transcript?format=srt":
            self.reply(200, b"1\n00:00:00,000 --> 00:00:01,000\nhello\n", "text/plain")
        else:
            self.reply(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})


@pytest.fixture
def fake_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    uploads: list[dict[str, Any]] = []
    handler = type("Handler", (FakeGateway,), {"uploads": uploads})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(cli.ENV_GATEWAY, f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv(cli.ENV_API_KEY, FakeGateway.key)
    yield uploads
    server.shutdown()
    server.server_close()


def test_transcribe_uploads_follows_and_writes(
    fake_gateway: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "talk.wav"
    audio.write_bytes(b"RIFF" + bytes(range(256)) * 4000)
    output = tmp_path / "talk.srt"
    assert cli.main(["transcribe", str(audio), "--model", "small", "-o", str(output), "--language", "en"]) == 0
    assert output.read_text().endswith("hello\n")
    [upload] = fake_gateway
    assert upload["file"] == audio.read_bytes()
    assert upload["filename"] == "talk.wav"
    assert (upload["model"], upload["language"], upload["formats"]) == (b"small", b"en", b"srt")
    assert "task" not in upload
    err = capsys.readouterr().err
    assert "Running" in err
    assert "Succeeded" in err
    assert FakeGateway.key not in err


def test_gateway_errors_are_one_line(fake_gateway: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "tj-404"]) == 1
    assert capsys.readouterr().err == "kubescribe: error: 404 not_found: no route /v1/jobs/tj-404\n"
    assert cli.main(["get", "tj-1", "--api-key", "wrong"]) == 1
    err = capsys.readouterr().err
    assert err == "kubescribe: error: 401 unauthorized: invalid API key\n"
