"""How the local node probes a container, as a kubelet does: the probe's defaults, its port, how many attempts in a
row change its result, each handler against a real server, and what the results do to a running container."""

from __future__ import annotations

import http.server
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster.nodeagent.container import Container
from localcluster.nodeagent.probes import (
    ProbeError,
    Prober,
    Threshold,
    Timing,
    http_get,
    port_number,
    run_command,
    tcp_socket,
    timing,
)
from localcluster.pki import CertificateAuthority

SPEC = {"name": "main", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]}


def test_a_probe_takes_the_api_servers_defaults() -> None:
    assert timing({"exec": {"command": ["true"]}}) == Timing(0, 10, 1, 1, 3)
    written = {"initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3, "successThreshold": 2}
    assert timing({**written, "failureThreshold": 1}) == Timing(5, 2, 3, 2, 1)


def test_a_port_is_a_number_or_the_name_of_a_container_port() -> None:
    assert port_number(9090, SPEC) == 9090
    assert port_number("http", SPEC) == 8080
    assert port_number("7070", SPEC) == 7070
    with pytest.raises(ProbeError, match="couldn't find port: metrics in container main"):
        port_number("metrics", SPEC)
    with pytest.raises(ProbeError, match="invalid port number: 70000"):
        port_number(70000, SPEC)


def test_a_result_changes_once_enough_attempts_in_a_row_agree() -> None:
    threshold = Threshold(success_threshold=2, failure_threshold=3)
    assert [threshold.record(False) for _ in range(4)] == [None, None, False, False]
    assert threshold.record(True) is None
    assert threshold.record(False) is None  # a success broke the run of failures: it starts again
    assert [threshold.record(True) for _ in range(3)] == [None, True, True]


class Handler(http.server.BaseHTTPRequestHandler):
    """/ok answers 200, /fail 500, /here redirects to /fail, /away to another host; each request's headers are kept."""

    seen: list[dict[str, str]] = []  # noqa: RUF012 - shared by the server's handlers

    def do_GET(self) -> None:
        Handler.seen.append(dict(self.headers))
        redirects = {"/here": "/fail", "/away": "http://elsewhere.invalid/fail"}
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
        else:
            self.send_response({"/ok": 200, "/fail": 500}.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(server: http.server.HTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_port() -> Iterator[int]:
    yield from serve(http.server.HTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture
def https_port(tmp_path: Path) -> Iterator[int]:
    cert, key = CertificateAuthority(tmp_path).issue_server("probed", (), ("elsewhere.invalid",))
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from serve(server)


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def test_http_get_succeeds_from_200_to_399(http_port: int) -> None:
    spec = {"name": "main", "ports": [{"name": "web", "containerPort": http_port}]}
    headers = [{"name": "X-Probe", "value": "yes"}]
    assert http_get({"path": "/ok", "port": "web", "httpHeaders": headers}, spec, 1) == (True, "")
    assert Handler.seen[-1]["X-Probe"] == "yes"
    assert Handler.seen[-1]["User-Agent"].startswith("kube-probe/")
    assert http_get({"path": "/fail", "port": http_port}, spec, 1) == (False, "HTTP probe failed with statuscode: 500")
    assert http_get({"path": "/here", "port": http_port}, spec, 1) == (False, "HTTP probe failed with statuscode: 500")
    assert http_get({"path": "/away", "port": http_port}, spec, 1) == (True, "")
    port = closed_port()
    success, message = http_get({"path": "/ok", "port": port}, spec, 1)
    assert not success
    assert message.startswith(f'Get "http://127.0.0.1:{port}/ok": ')


def test_https_is_not_verified(https_port: int) -> None:
    assert http_get({"path": "/ok", "port": https_port, "scheme": "HTTPS"}, SPEC, 1) == (True, "")


def test_tcp_socket_succeeds_once_it_connects(http_port: int) -> None:
    assert tcp_socket({"port": http_port}, SPEC, 1) == (True, "")
    success, message = tcp_socket({"port": (port := closed_port())}, SPEC, 1)
    assert not success
    assert message.startswith(f"dial tcp 127.0.0.1:{port}: ")


def test_an_exec_command_succeeds_with_exit_code_zero(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "WORD": "hello"}
    assert run_command(["sh", "-c", 'echo "$WORD from $PWD"'], env, tmp_path, 1) == (True, f"hello from {tmp_path}")
    assert run_command(["sh", "-c", "echo not yet; exit 1"], env, tmp_path, 1) == (False, "not yet")
    assert run_command(["false"], env, tmp_path, 1) == (False, "command exited with 1")
    started = time.monotonic()
    assert run_command(["sleep", "30"], env, tmp_path, 0.5) == (False, "command timed out after 0.5s")
    assert time.monotonic() - started < 5


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, reason: str, message: str) -> None:
        self.seen.append((kind, reason, message))


def running(tmp_path: Path, **probes: Any) -> Container:
    """A container running `sleep`, with the given probes (fractions of a second apart)."""
    container = Container({"name": "main", **probes}, tmp_path / "root", tmp_path / "logs")
    container.start(["sleep", "60"], {"PATH": "/usr/bin:/bin"}, tmp_path)
    return container


def eventually(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def tcp_probe(port: int, **fields: float) -> dict[str, Any]:
    return {"tcpSocket": {"port": port}, "periodSeconds": 0.1, **fields}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Listener:
    """A port that takes connections while it is open."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock: socket.socket | None = None

    def open(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))

    def close(self) -> None:
        if self.sock:
            self.sock.close()


def test_readiness_follows_its_probe(tmp_path: Path) -> None:
    listener = Listener()
    container = running(tmp_path, readinessProbe=tcp_probe(listener.port, failureThreshold=1))
    events = Events()
    prober = Prober(container, {"spec": {}}, events)
    prober.start()
    try:
        assert container.status()["started"]
        time.sleep(0.5)
        assert not container.status()["ready"]
        failed = f"Readiness probe failed: dial tcp 127.0.0.1:{listener.port}:"
        assert any(message.startswith(failed) for _, _, message in events.seen)
        listener.open()
        eventually(lambda: container.status()["ready"])
        listener.close()
        eventually(lambda: not container.status()["ready"])
    finally:
        prober.stop()
        listener.close()
        container.signal(signal.SIGKILL)


def test_a_startup_probe_holds_the_others_back_then_a_failed_liveness_probe_kills(tmp_path: Path) -> None:
    started, alive = Listener(), Listener()
    container = running(
        tmp_path,
        startupProbe=tcp_probe(started.port, failureThreshold=100),
        livenessProbe=tcp_probe(alive.port, failureThreshold=2, terminationGracePeriodSeconds=1),
    )
    events = Events()
    prober = Prober(container, {"spec": {"restartPolicy": "Always"}}, events)
    prober.start()
    try:
        time.sleep(0.6)
        assert (container.status()["started"], container.status()["ready"]) == (False, False)
        assert container.is_running(), "the liveness probe waits for the startup probe"
        assert all(message.startswith("Startup probe failed") for _, _, message in events.seen)
        started.open()
        eventually(lambda: not container.is_running())
        assert any(message.startswith("Liveness probe failed: dial tcp") for _, _, message in events.seen)
        assert events.seen[-1] == ("Normal", "Killing", "Container main failed liveness probe, will be restarted")
    finally:
        prober.stop()
        started.close()
        container.signal(signal.SIGKILL)


def test_a_failed_startup_probe_kills_the_container(tmp_path: Path) -> None:
    container = running(tmp_path, startupProbe=tcp_probe(free_port(), failureThreshold=2))
    events = Events()
    prober = Prober(container, {"spec": {"restartPolicy": "Never"}}, events)
    prober.start()
    try:
        eventually(lambda: not container.is_running())
        assert container.reap()
        assert container.state["terminated"]["exitCode"] == 128 + 15
        assert events.seen[-1] == ("Normal", "Killing", "Container main failed startup probe")
    finally:
        prober.stop()
