"""The images `make images` builds, checked without a container runtime: buildah mounts each image's root filesystem,
and its programs run in a chroot of it, in mount and PID namespaces of their own, as the image's user and with the
image's environment. Needs root, and the images built (`make test-images` builds them first)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from kubescribe.contract import (
    ENV_EGRESS_RULES,
    ENV_STORE_GRANTS,
    ENV_TERMINATION_MESSAGE_PATH,
    EgressRules,
    Grant,
    StoreGrants,
)
from kubescribe.operator.settings import OperatorSettings
from tests.integration.speech import INTERVIEW, PASSAGE, conversation, speak, word_error_rate

ROOT = Path(__file__).parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGES = {"operator": f"localhost/kubescribe:{VERSION}", "runner": f"localhost/kubescribe-runner:{VERSION}"}
RUNTIME_UID = "65532"
RUNTIME_USER = f"{RUNTIME_UID}:{RUNTIME_UID}"
"""The user and group of the pods the chart and the operator make."""
MAX_WER = 0.3  # tiny.en on espeak-ng's voice, as in test_transcription
SERVER_START_SECONDS = 60

# In new mount and PID namespaces: the host's /dev, a /proc of the new PID namespace, and the test's directory as
# /tmp, the one place the image's user may write (an emptyDir in a pod); then the chroot, as the image's user.
CHROOT = """
set -e
mount --rbind /dev "$ROOT/dev"
mount -t proc proc "$ROOT/proc"
mount --bind "$TMP" "$ROOT/tmp"
exec chroot --userspec="$USERSPEC" "$ROOT" /usr/bin/env -i -C "$WORKDIR" "$@"
"""


@dataclass(frozen=True)
class Image:
    root: Path
    config: dict[str, Any]
    """The OCI image configuration: User, Env, WorkingDir, Cmd, Labels."""
    tmp: Path

    def command(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        variables = [*self.config["Env"], *(f"{name}={value}" for name, value in (env or {}).items())]
        config = self.config
        where = f'ROOT="{self.root}" TMP="{self.tmp}" USERSPEC="{config["User"]}" WORKDIR="{config["WorkingDir"]}"\n'
        namespaces = ["unshare", "--mount", "--pid", "--fork"]
        return [*namespaces, "sh", "-c", where + CHROOT, "chroot", *variables, *argv]

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv, env), check=False, capture_output=True, text=True, timeout=300)

    @contextlib.contextmanager
    def started(self, argv: list[str], env: dict[str, str]) -> Iterator[None]:
        """A server running while the block runs. It is its PID namespace's first process, whose end ends the
        namespace; killing unshare would leave it running."""
        with (self.tmp / f"{argv[0]}.log").open("w") as log:
            unshare = subprocess.Popen(self.command(argv, env), stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
            for pid in children:
                os.kill(int(pid), signal.SIGKILL)
            unshare.wait(timeout=30)


def _buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, check=True).stdout.strip()


def _mounted(name: str, tmp: Path) -> Iterator[Image]:
    if subprocess.run(["buildah", "inspect", "--type", "image", name], check=False, capture_output=True).returncode:
        pytest.fail(f"{name} is not built: run `make images`")
    container = _buildah("from", "--pull=never", name)
    try:
        tmp.chmod(0o1777)
        config = json.loads(_buildah("inspect", "--type", "image", name))["OCIv1"]["config"]
        yield Image(Path(_buildah("mount", container)), config, tmp)
    finally:
        subprocess.run(["buildah", "umount", container], check=False, capture_output=True)
        subprocess.run(["buildah", "rm", container], check=False, capture_output=True)


@pytest.fixture(scope="module")
def operator_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    yield from _mounted(IMAGES["operator"], tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def runner_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    yield from _mounted(IMAGES["runner"], tmp_path_factory.mktemp("runner"))


@pytest.fixture(params=["operator_image", "runner_image"])
def image(request: pytest.FixtureRequest) -> Image:
    return request.getfixturevalue(request.param)


def test_runs_as_a_fixed_user_that_is_not_root(image: Image) -> None:
    assert image.config["User"] == RUNTIME_USER
    assert image.run(["id", "-u"]).stdout.strip() == RUNTIME_UID


def test_is_labelled_with_its_version_and_revision(image: Image) -> None:
    labels = image.config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == revision
    assert "org.opencontainers.image.source" in labels


def test_its_user_can_write_nothing_but_temporary_directories(image: Image) -> None:
    found = image.run(
        ["find", "/", "-xdev", "!", "-type", "l", "(", "-writable", "-o", "-user", RUNTIME_UID, ")", "-print"]
    )
    assert set(found.stdout.split()) <= {"/tmp", "/var/tmp", "/run/lock"}
    not_root = image.run(["find", "/opt", "!", "-user", "root", "-print"])
    assert (not_root.returncode, not_root.stdout) == (0, "")


def test_has_no_compiler(image: Image) -> None:
    # The chroot works (Python runs there), so an empty answer below is the tool's absence.
    assert image.run(["python", "-c", "import kubescribe"]).returncode == 0
    for tool in ("gcc", "cc", "c++", "make"):
        assert image.run(["sh", "-c", f"command -v {tool}"]).stdout == ""


def test_holds_nothing_of_its_build(image: Image) -> None:
    """No sources, no pip cache, nothing of the build machine's (such as its mounts' mount points)."""
    leftovers = ["src", "root/.cache", "tmp/pip-*", "etc/pip.conf", "etc/xdg/pip"]
    assert [path for pattern in leftovers for path in image.root.glob(pattern)] == []


def test_the_command_runs(operator_image: Image) -> None:
    answer = operator_image.run(["kubescribe", "--help"])
    assert answer.returncode == 0, answer.stderr
    assert "transcribe" in answer.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _kubeconfig(directory: Path) -> None:
    """A kubeconfig whose API server is not there: the servers start and answer without it."""
    cluster = {"server": f"https://127.0.0.1:{_free_port()}", "insecure-skip-tls-verify": True}
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "none", "cluster": cluster}],
        "users": [{"name": "none", "user": {"token": "none"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "current-context": "none",
    }
    (directory / "kubeconfig").write_text(json.dumps(kubeconfig))


def _get_when_up(url: str) -> httpx.Response:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        try:
            return httpx.get(url)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_operator_starts_and_answers_its_liveness_probe(operator_image: Image) -> None:
    _kubeconfig(operator_image.tmp)
    port = _free_port()
    env = {
        "KUBECONFIG": "/tmp/kubeconfig",
        "KUBESCRIBE_LIVENESS_PORT": str(port),
        "KUBESCRIBE_METRICS_PORT": str(_free_port()),
    }
    with operator_image.started(["kubescribe-operator"], env):
        answer = _get_when_up(f"http://127.0.0.1:{port}/healthz")
    assert answer.status_code == 200
    assert "reconcileLoop" in answer.json()


def test_the_gateway_serves_its_api_its_page_and_its_metrics(operator_image: Image) -> None:
    _kubeconfig(operator_image.tmp)
    port, metrics_port = _free_port(), _free_port()
    env = {
        "KUBECONFIG": "/tmp/kubeconfig",
        "KUBESCRIBE_GATEWAY_HOST": "127.0.0.1",
        "KUBESCRIBE_GATEWAY_PORT": str(port),
        "KUBESCRIBE_GATEWAY_METRICS_PORT": str(metrics_port),
    }
    with operator_image.started(["kubescribe-gateway"], env):
        health = _get_when_up(f"http://127.0.0.1:{port}/healthz")
        page = httpx.get(f"http://127.0.0.1:{port}/")
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert health.json() == {"status": "ok"}
    assert "<title>Kubescribe</title>" in page.text
    assert metrics.status_code == 200


class Store(BaseHTTPRequestHandler):
    """The source URL, and the presigned URLs the transcripts are PUT to."""

    files: ClassVar[dict[str, bytes]] = {}
    uploads: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def do_PUT(self) -> None:
        self.uploads[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Store)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _transcribe(image: Image, store: str, wav: Path, options: dict[str, object]) -> tuple[dict[str, Any], str]:
    """The image's command run as the operator's Job runs it, on `wav` at a URL: its result and its txt transcript."""
    Store.files[f"/{wav.name}"] = wav.read_bytes()
    grant = Grant(url=f"{store}/out/{wav.stem}.txt", uri=f"s3://transcripts/images/{wav.stem}.txt")
    spec = {
        "source": {"url": f"{store}/{wav.name}"},
        "model": "tiny.en",
        "options": options,
        "outputs": {"formats": ["txt"], "s3": {"bucket": "transcripts", "prefix": "images/"}},
    }
    termination_log = image.tmp / wav.stem / "dev" / "termination-log"
    termination_log.parent.mkdir(parents=True)
    for directory in (termination_log.parent, termination_log.parent.parent):
        directory.chmod(0o777)
    env = {
        "KUBESCRIBE_SPEC": json.dumps(spec),
        ENV_STORE_GRANTS: StoreGrants(expires="2099-01-01T00:00:00Z", outputs={"txt": grant}).model_dump_json(),
        ENV_EGRESS_RULES: EgressRules.model_validate({"allowed_private_ranges": ["127.0.0.1/32"]}).model_dump_json(),
        "KUBESCRIBE_MODEL_CACHE": "/tmp/models",
        ENV_TERMINATION_MESSAGE_PATH: f"/tmp/{wav.stem}/dev/termination-log",
        "HF_HUB_OFFLINE": "1",
    }
    runner = image.run(image.config["Cmd"], env)
    assert runner.returncode == 0, runner.stdout + runner.stderr
    return json.loads(termination_log.read_text())["result"], Store.uploads[f"/out/{wav.stem}.txt"].decode()


def test_the_runner_transcribes_speech_with_its_baked_model(runner_image: Image, store: str, tmp_path: Path) -> None:
    """The image's command is the operator's runner command, and it finds tiny.en in the image: no hub is reachable."""
    assert runner_image.config["Cmd"] == OperatorSettings().runner_command
    result, transcript = _transcribe(runner_image, store, speak(tmp_path, "passage", PASSAGE), {})
    assert result["language"] == "en"
    assert word_error_rate(PASSAGE, transcript) < MAX_WER


def test_the_runner_tells_speakers_apart_with_its_speaker_encoder(
    runner_image: Image, store: str, tmp_path: Path
) -> None:
    wav, _ = conversation(tmp_path, "interview", INTERVIEW)
    result, transcript = _transcribe(runner_image, store, wav, {"diarize": True})
    assert result["speakers"] == 2
    assert transcript.startswith("SPEAKER_00\n")
