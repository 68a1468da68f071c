"""The CLI's commands: arguments, settings, and the whole `transcribe` flow against a small stand-in gateway on
loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubescribe.api.v1alpha1 import FINISHED_PHASES
from kubescribe.cli import client, commands
from kubescribe.cli.client import CliError


def test_arguments() -> None:
    args = commands.build_parser().parse_args(
        ["transcribe", "talk.mp3", "--model", "small", "--format", "srt", "-o", "talk.srt", "--no-vad"]
    )
    assert (args.audio, args.model, args.format, args.output, args.vad, args.task) == (
        ["talk.mp3"],
        "small",
        "srt",
        "talk.srt",
        False,
        None,
    )
    assert commands._transcript_format(commands.build_parser().parse_args(["transcript", "x", "-o", "a.vtt"])) == "vtt"
    assert commands._transcript_format(commands.build_parser().parse_args(["transcript", "x", "-o", "a.mp3"])) == "txt"
    keys = commands.build_parser().parse_args(["keys", "create", "--namespace", "team-a", "--name", "alice"])
    assert (keys.secret_namespace, keys.secret_name, keys.handler) == (
        "kubescribe",
        "kubescribe-api-keys",
        commands.cmd_keys_create,
    )
    for wrong in (["jobs", "--phase", "Done"], ["jobs", "--limit", "0"], ["keys", "revoke", "--name", "alice"]):
        with pytest.raises(SystemExit):
            commands.build_parser().parse_args(wrong)


def test_the_package_runs_as_a_module() -> None:
    run = subprocess.run([sys.executable, "-m", "kubescribe.cli", "--help"], capture_output=True, text=True, check=True)
    assert run.stdout.startswith("usage: kubescribe ")


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(commands.ENV_GATEWAY, raising=False)
    monkeypatch.setenv(commands.ENV_API_KEY, "ks_secret")
    assert commands.main(["jobs"]) == 1
    assert "KUBESCRIBE_GATEWAY_URL" in capsys.readouterr().err
    monkeypatch.setenv(commands.ENV_GATEWAY, "http://127.0.0.1:9")
    monkeypatch.delenv(commands.ENV_API_KEY)
    assert commands.main(["jobs"]) == 1
    assert "KUBESCRIBE_API_KEY" in capsys.readouterr().err


class FakeGateway(BaseHTTPRequestHandler):
    """Accepts one upload, reports it Running then Succeeded over SSE, and serves its transcript."""

    key = "ks_secret"
    uploads: list[dict[str, Any]]
    polls: list[str]

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
        return {"id": "tj-1", "phase": phase, "finished": phase in FINISHED_PHASES, "progress": progress, "error": None}

    def do_POST(self) -> None:
        if not self.authorized():
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        if self.path == "/v1/batches":
            files = [part for part in message.iter_parts() if part.get_filename()]
            self.uploads.extend({"filename": f.get_filename(), "file": f.get_payload(decode=True)} for f in files)
            jobs = [{"index": i, "id": f"tj-b{i}", "filename": f.get_filename()} for i, f in enumerate(files[:-1])]
            failure = {"message": "the Kubernetes API server is unavailable", "type": "server_error"}
            self.reply(202, {"id": "tb-1", "jobs": jobs, "not_created": [{"index": len(jobs), "error": failure}]})
            return
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
        elif self.path == "/v1/batches/tb-1":
            self.polls.append(self.path)
            done = len(self.polls) > 1
            files = [
                {"id": "tj-b0", "phase": "Succeeded" if done else "Running", "percent": 100 if done else 40},
                {"id": "tj-b1", "phase": "Failed" if done else "Queued", "reason": "BadAudio" if done else None},
            ]
            counts = {"Succeeded": 1, "Failed": 1} if done else {"Running": 1, "Queued": 1}
            self.reply(200, {"finished": done, "files": files, "counts": counts, "progress": {"percent": 50}})
        elif self.path == "/v1/jobs/tj-b0/transcript?format=vtt":
            self.reply(200, b"WEBVTT\n", "text/plain")
        else:
            self.reply(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})


@pytest.fixture
def fake_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    uploads: list[dict[str, Any]] = []
    handler = type("Handler", (FakeGateway,), {"uploads": uploads, "polls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(commands.ENV_GATEWAY, f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv(commands.ENV_API_KEY, FakeGateway.key)
    yield uploads
    server.shutdown()
    server.server_close()


def test_transcribe_uploads_follows_and_writes(
    fake_gateway: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "talk.wav"
    audio.write_bytes(b"RIFF" + bytes(range(256)) * 4000)
    output = tmp_path / "talk.srt"
    assert commands.main(["transcribe", str(audio), "--model", "small", "-o", str(output), "--language", "en"]) == 0
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


def test_decoding_options_go_into_the_form(fake_gateway: list[dict[str, Any]], tmp_path: Path) -> None:
    audio = tmp_path / "talk.wav"
    audio.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    options = ["--prompt", "Zyphora Quellbright", "--hotwords", "Quillfeather", "--beam-size", "1"]
    options += ["--temperature", "0.2", "--word-timestamps", "--speakers", "2", "--format", "srt", "--queue", "gpus"]
    assert commands.main(["transcribe", str(audio), *options, "-o", str(tmp_path / "talk.srt")]) == 0
    [upload] = fake_gateway
    fields = ("prompt", "hotwords", "beam_size", "temperature", "word_timestamps", "speakers", "queue")
    assert {name: upload[name] for name in fields} == {
        "prompt": b"Zyphora Quellbright",
        "hotwords": b"Quillfeather",
        "beam_size": b"1",
        "temperature": b"0.2",
        "word_timestamps": b"true",
        "speakers": b"2",
        "queue": b"gpus",
    }
    assert "diarize" not in upload
    for wrong in (["--beam-size", "two"], ["--temperature", "warm"]):
        with pytest.raises(SystemExit):
            commands.build_parser().parse_args(["transcribe", "talk.wav", *wrong])


def test_gateway_errors_are_one_line(fake_gateway: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.main(["get", "tj-404"]) == 1
    assert capsys.readouterr().err == "kubescribe: error: 404 not_found: no route /v1/jobs/tj-404\n"
    assert commands.main(["get", "tj-1", "--api-key", "wrong"]) == 1
    err = capsys.readouterr().err
    assert err == "kubescribe: error: 401 unauthorized: invalid API key\n"


def test_several_files_are_one_batch_each_transcript_written_next_to_its_name(
    fake_gateway: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "BATCH_POLL_SECONDS", 0)
    audio = [tmp_path / name for name in ("a.wav", "b.mp3", "c.flac")]
    for path in audio:
        path.write_bytes(path.name.encode() * 1000)
    out = tmp_path / "out"
    assert commands.main(["transcribe", *map(str, audio), "-o", str(out), "--format", "vtt"]) == 1
    assert [upload["filename"] for upload in fake_gateway] == ["a.wav", "b.mp3", "c.flac"]
    assert [upload["file"] for upload in fake_gateway] == [path.read_bytes() for path in audio]
    assert sorted(path.name for path in out.iterdir()) == ["a.vtt"]
    assert (out / "a.vtt").read_text() == "WEBVTT\n"
    err = capsys.readouterr().err
    assert "batch tb-1 submitted: 2 of 3 files" in err
    assert f"{audio[2]}: not submitted: the Kubernetes API server is unavailable" in err
    assert f"{audio[1]}: job tj-b1 failed: BadAudio" in err
    assert "a.wav  Running" in err and "total" in err


def test_transcripts_of_a_batch_are_named_after_their_files(tmp_path: Path) -> None:
    named = commands.transcript_paths([Path("x/a.mp3"), Path("b.tar.gz"), Path(".hidden.wav")], tmp_path, "srt")
    assert named == [tmp_path / "a.srt", tmp_path / "b.tar.srt", tmp_path / ".hidden.srt"]
    with pytest.raises(CliError, match="several files would write"):
        commands.transcript_paths([Path("day1/talk.mp3"), Path("day2/talk.wav")], tmp_path, "txt")
    args = commands.build_parser().parse_args(["transcribe", "a.mp3", "b.mp3", "-o", "out/", "--no-wait"])
    assert (args.audio, args.output, args.no_wait) == (["a.mp3", "b.mp3"], "out/", True)
