"""The runner end to end against a local HTTP server that also plays S3: `python -m kubescribe.runner` as the
operator runs it (exit codes, termination messages, SIGTERM, secrets) and a whole run from URL to transcripts."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from faster_whisper import WhisperModel

from kubescribe.api.v1alpha1 import Result
from kubescribe.contract import (
    ENV_EGRESS_RULES,
    ENV_LIMITS,
    ENV_STORE_GRANTS,
    ENV_TERMINATION_MESSAGE_PATH,
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_OK,
    EXIT_SOURCE_NOT_FOUND,
    EgressRules,
    Endpoint,
    Grant,
    RunnerLimits,
    StoreGrants,
)
from kubescribe.egress import Refused
from kubescribe.runner.config import Config, S3Settings
from kubescribe.runner.errors import Abandoned, RunnerFailure
from kubescribe.runner.models import resolve_model
from kubescribe.runner.pipeline import run
from kubescribe.runner.source import s3_client
from kubescribe.runner.transcribe import load_model

ACCESS_KEY = "AKIDRUNNERTEST"
SECRET_KEY = "runner-test-secret-value"
NO_SUCH_KEY = b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
LOOPBACK_ALLOWED = EgressRules(allowed_private_ranges=["127.0.0.1/32"]).model_dump_json()
LOCATION = b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">us-east-1</LocationConstraint>'


class Handler(BaseHTTPRequestHandler):
    """Plain HTTP for url sources, and an S3 endpoint that holds no objects."""

    stalled = threading.Event()
    release = threading.Event()
    files: ClassVar[dict[str, bytes]] = {}
    requested: ClassVar[list[str]] = []
    uploads: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_HEAD(self) -> None:
        self._answer(404, b"")

    def do_GET(self) -> None:
        self.requested.append(self.path)
        if "location" in self.path:
            self._answer(200, LOCATION)
        elif "expired" in self.path:
            self._answer(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        elif self.path in self.files:
            self._answer(200, self.files[self.path])
        elif self.path == "/slow.wav":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"RIFF")
            self.wfile.flush()
            self.stalled.set()
            self.release.wait(30)
        else:
            self._answer(404, NO_SUCH_KEY)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.uploads[self.path] = (self.headers["Content-Type"], body)
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.release.set()
    httpd.shutdown()


def _start(
    tmp_path: Path,
    source: dict[str, object],
    grants: StoreGrants | None = None,
    egress: str = LOOPBACK_ALLOWED,
    limits: RunnerLimits | None = None,
) -> subprocess.Popen[str]:
    (tmp_path / "root" / "dev").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    spec = {"source": source, "outputs": {"s3": {"bucket": "transcripts"}}}
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "KUBESCRIBE_SPEC": json.dumps(spec),
        ENV_TERMINATION_MESSAGE_PATH: str(tmp_path / "root/dev/termination-log"),
        "KUBESCRIBE_MODEL_CACHE": str(tmp_path / "models"),
        ENV_EGRESS_RULES: egress,
        **({ENV_LIMITS: limits.model_dump_json()} if limits else {}),
        **(
            {ENV_STORE_GRANTS: grants.model_dump_json()}
            if grants
            else {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        ),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "kubescribe.runner"],
        cwd=tmp_path / "work",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(tmp_path: Path, runner: subprocess.Popen[str]) -> tuple[int, dict[str, str], str]:
    stdout, stderr = runner.communicate(timeout=120)
    termination = json.loads((tmp_path / "root" / "dev" / "termination-log").read_text())
    for line in stderr.splitlines():
        json.loads(line)
    assert list((tmp_path / "work").iterdir()) == []
    return runner.returncode, termination, stdout + stderr


def test_missing_s3_object(tmp_path: Path, server: str) -> None:
    source = {"s3": {"bucket": "audio", "key": "talks/gone.flac", "endpoint": server, "secretName": "s"}}
    runner = _start(tmp_path, source)
    code, termination, output = _finish(tmp_path, runner)
    assert code == EXIT_SOURCE_NOT_FOUND
    assert termination["reason"] == "SourceNotFound"
    assert "s3://audio/talks/gone.flac" in termination["message"]
    assert SECRET_KEY not in output + json.dumps(termination)


def test_missing_url(tmp_path: Path, server: str) -> None:
    code, termination, _ = _finish(tmp_path, _start(tmp_path, {"url": f"{server}/gone.wav?token=abc"}))
    assert (code, termination["reason"]) == (EXIT_SOURCE_NOT_FOUND, "SourceNotFound")
    assert "404" in termination["message"]
    assert "token" not in termination["message"]


def test_a_forbidden_url_fails_without_retry_and_without_a_request(tmp_path: Path, server: str) -> None:
    Handler.requested.clear()
    runner = _start(tmp_path, {"url": f"{server}/talk.wav?token=abc"}, egress=EgressRules().model_dump_json())
    code, termination, output = _finish(tmp_path, runner)
    assert (code, termination["reason"]) == (EXIT_BAD_INPUT, "SourceForbidden")
    assert termination["message"] == "source.url resolves to 127.0.0.1, a loopback address, which jobs may not reach"
    assert "token=abc" not in output
    assert Handler.requested == []


@pytest.mark.parametrize(
    ("rules", "where"),
    [
        (EgressRules(), "127.0.0.1, a loopback address"),
        (None, "127.0.0.1:{port}, the operator's store"),
    ],
)
def test_a_forbidden_own_store_fails_without_retry_and_without_a_request(
    tmp_path: Path, server: str, rules: EgressRules | None, where: str
) -> None:
    """The job's own store (its endpoint and credentials) is held to the egress rules as a source URL is: the
    operator's store stays forbidden to it."""
    port = int(server.rsplit(":", 1)[1])
    store = Endpoint(host="127.0.0.1", port=port, name="the operator's store")
    rules = rules or EgressRules(allowed_private_ranges=["127.0.0.1/32"], forbidden_endpoints=[store])
    Handler.requested.clear()
    source: dict[str, object] = {
        "s3": {"bucket": "audio", "key": "talk.wav", "endpoint": f"{server}/?token=abc", "secretName": "s"}
    }
    code, termination, output = _finish(tmp_path, _start(tmp_path, source, egress=rules.model_dump_json()))
    assert (code, termination["reason"]) == (EXIT_BAD_INPUT, "SourceForbidden")
    message = f"source.s3.endpoint resolves to {where.format(port=port)}, which jobs may not reach"
    assert termination["message"] == message
    assert "token=abc" not in output
    assert SECRET_KEY not in output + json.dumps(termination)
    assert Handler.requested == []


def test_every_client_of_the_own_store_is_held_to_the_rules(server: str) -> None:
    """The model's listing and the transcripts' upload use the same clients as the source's download."""
    client = s3_client(S3Settings(server, ACCESS_KEY, SECRET_KEY), EgressRules())
    Handler.requested.clear()
    with pytest.raises(Refused):
        list(client.list_objects("models", prefix="whisper/", recursive=True))
    with pytest.raises(Refused):
        client.put_object("transcripts", "out/talk.txt", io.BytesIO(b"words"), 5)
    assert Handler.requested == []
    allowed = s3_client(S3Settings(server, ACCESS_KEY, SECRET_KEY), EgressRules.model_validate_json(LOOPBACK_ALLOWED))
    allowed.put_object("transcripts", "out/talk.txt", io.BytesIO(b"words"), 5)
    assert Handler.uploads["/transcripts/out/talk.txt"][1] == b"words"


def test_an_expired_grant_fails_without_retry_and_without_the_signature(tmp_path: Path, server: str) -> None:
    url = f"{server}/audio/expired.wav?X-Amz-Signature=feedface"
    grants = StoreGrants(expires="2025-01-01T00:00:00Z", source=Grant(url=url, uri="s3://audio/expired.wav"))
    code, termination, output = _finish(
        tmp_path, _start(tmp_path, {"s3": {"bucket": "audio", "key": "expired.wav"}}, grants)
    )
    assert (code, termination["reason"]) == (EXIT_BAD_INPUT, "StoreAccessDenied")
    assert "s3://audio/expired.wav" in termination["message"]
    assert "feedface" not in output + json.dumps(termination)


def test_a_runner_that_succeeds_leaves_its_result_in_the_termination_message(tmp_path: Path, server: str) -> None:
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Send the report before noon."], check=True)
    Handler.files["/talks/speech.wav"] = speech.read_bytes()
    uris = {f: f"s3://transcripts/speech.{f}" for f in ("json", "txt", "srt", "vtt")}
    grants = StoreGrants(
        expires="2030-01-01T00:00:00Z",
        outputs={
            f: Grant(url=f"{server}/transcripts/speech.{f}?X-Amz-Signature=put", uri=uri) for f, uri in uris.items()
        },
    )
    code, termination, _ = _finish(tmp_path, _start(tmp_path, {"url": f"{server}/talks/speech.wav"}, grants))
    assert code == EXIT_OK
    result = Result.model_validate(termination["result"])
    assert result.outputs == uris
    assert result.language == "en"


def test_url_that_is_not_audio(tmp_path: Path, server: str) -> None:
    Handler.files["/notes.wav"] = b"these are words, not sounds\n"
    code, termination, _ = _finish(tmp_path, _start(tmp_path, {"url": f"{server}/notes.wav"}))
    assert (code, termination["reason"]) == (EXIT_BAD_INPUT, "BadAudio")
    assert termination["message"].startswith("the source is not audio: ")


def test_sources_beyond_the_limits_fail_without_retry(tmp_path: Path, server: str) -> None:
    Handler.files["/big.wav"] = b"\0" * 4096
    limits = RunnerLimits(max_source_bytes=1024)
    code, termination, _ = _finish(tmp_path, _start(tmp_path, {"url": f"{server}/big.wav"}, limits=limits))
    assert (code, termination["reason"]) == (EXIT_BAD_INPUT, "SourceTooLarge")
    assert termination["message"] == (
        "the source URL is 4.0 KiB, more than 1.0 KiB, the largest source this cluster takes (runner.maxSourceBytes)"
    )
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Send the report before noon."], check=True)
    Handler.files["/speech.wav"] = speech.read_bytes()
    long_dir = tmp_path / "long"
    long_dir.mkdir()
    limits = RunnerLimits(max_duration_seconds=0.5)
    code, termination, _ = _finish(long_dir, _start(long_dir, {"url": f"{server}/speech.wav"}, limits=limits))
    assert (code, termination["reason"]) == (EXIT_BAD_INPUT, "AudioTooLong")


def test_sigterm_cancels_and_cleans_up(tmp_path: Path, server: str) -> None:
    Handler.stalled.clear()
    runner = _start(tmp_path, {"url": f"{server}/slow.wav"})
    assert Handler.stalled.wait(60)
    runner.send_signal(signal.SIGTERM)
    code, termination, _ = _finish(tmp_path, runner)
    assert code == EXIT_CANCELLED
    assert termination["reason"] == "Cancelled"


def test_invalid_spec() -> None:
    with pytest.raises(RunnerFailure) as failure:
        Config.from_env({"KUBESCRIBE_SPEC": '{"source": {}}'})
    assert (failure.value.exit_code, failure.value.reason) == (EXIT_BAD_INPUT, "InvalidSpec")


def test_configuration_from_the_environment() -> None:
    config = Config.from_env(
        {
            "KUBESCRIBE_SPEC": '{"source": {"url": "https://example.org/a.mp3"}}',
            "KUBESCRIBE_JOB_NAME": "talk",
            "AWS_ENDPOINT_URL": "http://minio:9000",
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
    )
    assert (config.job_name, config.job_namespace) == ("talk", None)
    assert config.model_cache == Path("~/.cache/kubescribe/models").expanduser()
    assert config.s3.with_endpoint("https://other:9000").endpoint == "https://other:9000"
    assert SECRET_KEY not in repr(config)
    assert config.egress == EgressRules()
    assert config.limits == RunnerLimits()
    limited = Config.from_env(
        {"KUBESCRIBE_SPEC": '{"source": {"url": "https://example.org/a.mp3"}}', ENV_LIMITS: '{"max_source_bytes": 5}'}
    )
    assert limited.limits.max_source_bytes == 5


@pytest.mark.parametrize("limits", ["[1", '{"max_source_bytes": 0}', '{"max_duration_seconds": -1}'])
def test_invalid_limits(limits: str) -> None:
    with pytest.raises(RunnerFailure) as failure:
        Config.from_env({"KUBESCRIBE_SPEC": '{"source": {"url": "https://example.org/a.mp3"}}', ENV_LIMITS: limits})
    assert (failure.value.exit_code, failure.value.reason) == (EXIT_BAD_INPUT, "InvalidSpec")


def test_invalid_egress_rules() -> None:
    with pytest.raises(RunnerFailure) as failure:
        Config.from_env({"KUBESCRIBE_SPEC": '{"source": {"url": "https://example.org/a.mp3"}}', ENV_EGRESS_RULES: "[1"})
    assert (failure.value.exit_code, failure.value.reason) == (EXIT_BAD_INPUT, "InvalidSpec")


def test_run_from_url_to_s3(tmp_path: Path, server: str) -> None:
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Send the report before noon."], check=True)
    Handler.files["/talks/speech.wav"] = speech.read_bytes()
    spec = {
        "source": {"url": f"{server}/talks/speech.wav"},
        "outputs": {"formats": ["json", "srt", "tsv"], "s3": {"bucket": "transcripts", "prefix": "out/"}},
    }
    env = {
        "KUBESCRIBE_SPEC": json.dumps(spec),
        "AWS_ENDPOINT_URL": server,
        "KUBESCRIBE_MODEL_CACHE": str(tmp_path),
        ENV_EGRESS_RULES: LOOPBACK_ALLOWED,
    }
    patches: list[dict[str, Any]] = []

    result = run(Config.from_env(env), tmp_path, patches.append)

    assert result.outputs == {
        "json": "s3://transcripts/out/speech.json",
        "srt": "s3://transcripts/out/speech.srt",
        "tsv": "s3://transcripts/out/speech.tsv",
    }
    content_type, body = Handler.uploads["/transcripts/out/speech.json"]
    assert content_type == "application/json"
    assert "report" in json.loads(body)["segments"][0]["text"]
    assert Handler.uploads["/transcripts/out/speech.srt"][0] == "application/x-subrip"
    assert patches[0]["status"]["progress"]["percent"] == 0
    final = patches[-1]["status"]
    assert final["progress"]["percent"] == 100
    assert final["result"]["language"] == "en"
    assert final["result"]["realTimeFactor"] > 0
    assert final["result"]["outputs"] == result.outputs


def test_run_through_presigned_urls_alone(tmp_path: Path, server: str) -> None:
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Send the report before noon."], check=True)
    Handler.files["/audio/talk.wav?X-Amz-Signature=get"] = speech.read_bytes()
    spec = {
        "source": {"s3": {"bucket": "audio", "key": "talk.wav"}},
        "outputs": {"formats": ["json", "txt"], "s3": {"bucket": "transcripts", "prefix": "team-a/talk/"}},
    }

    def grant(method: str, uri: str) -> Grant:
        return Grant(url=f"{server}/{uri.removeprefix('s3://')}?X-Amz-Signature={method}", uri=uri)

    grants = StoreGrants(
        expires="2030-01-01T00:00:00Z",
        source=grant("get", "s3://audio/talk.wav"),
        outputs={f: grant("put", f"s3://transcripts/team-a/talk/talk.{f}") for f in ("json", "txt")},
    )
    env = {
        "KUBESCRIBE_SPEC": json.dumps(spec),
        ENV_STORE_GRANTS: grants.model_dump_json(),
        "KUBESCRIBE_MODEL_CACHE": str(tmp_path),
    }

    result = run(Config.from_env(env), tmp_path, None)

    assert result.outputs == {
        "json": "s3://transcripts/team-a/talk/talk.json",
        "txt": "s3://transcripts/team-a/talk/talk.txt",
    }
    content_type, body = Handler.uploads["/transcripts/team-a/talk/talk.txt?X-Amz-Signature=put"]
    assert content_type == "text/plain; charset=utf-8"
    assert "report" in body.decode().lower()


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> WhisperModel:
    cache = tmp_path_factory.mktemp("models")
    return load_model(resolve_model("tiny.en", cache, lambda: s3_client(S3Settings(None, None, None))), str(cache))


def _pooled_config(tmp_path: Path, server: str, name: str) -> Config:
    """A job of an s3:// model that nobody granted: only a model given to the pipeline transcribes it."""
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Send the report before noon."], check=True)
    Handler.files[f"/audio/{name}.wav?X-Amz-Signature=get"] = speech.read_bytes()
    grants = StoreGrants(
        expires="2030-01-01T00:00:00Z",
        source=Grant(url=f"{server}/audio/{name}.wav?X-Amz-Signature=get", uri=f"s3://audio/{name}.wav"),
        outputs={"txt": Grant(url=f"{server}/out/{name}.txt?X-Amz-Signature=put", uri=f"s3://out/{name}.txt")},
        model_error="no model is granted",
    )
    spec = {
        "source": {"s3": {"bucket": "audio", "key": f"{name}.wav"}},
        "model": "s3://models/pooled/",
        "outputs": {"formats": ["txt"]},
    }
    return Config.from_env({"KUBESCRIBE_SPEC": json.dumps(spec), ENV_STORE_GRANTS: grants.model_dump_json()})


def test_a_pool_worker_runs_the_pipeline_with_its_loaded_model(
    tmp_path: Path, server: str, tiny_en: WhisperModel
) -> None:
    result = run(_pooled_config(tmp_path, server, "given"), tmp_path, None, whisper=tiny_en)

    assert result.outputs == {"txt": "s3://out/given.txt"}
    assert "report" in Handler.uploads["/out/given.txt?X-Amz-Signature=put"][1].decode().lower()


def test_an_attempt_no_longer_the_workers_own_uploads_nothing(
    tmp_path: Path, server: str, tiny_en: WhisperModel
) -> None:
    asked: list[str] = []

    def still_mine() -> bool:
        asked.append("asked")
        return False

    with pytest.raises(Abandoned):
        run(_pooled_config(tmp_path, server, "lost"), tmp_path, None, whisper=tiny_en, still_mine=still_mine)
    assert asked == ["asked"]
    assert "/out/lost.txt?X-Amz-Signature=put" not in Handler.uploads
