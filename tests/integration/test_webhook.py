"""The completion webhook: posted by the operator once, signed with the namespace's secret, retried on failure,
refused where jobs may not connect, and never held up by another namespace's receivers."""

from __future__ import annotations

import base64
import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubescribe.operator.webhook import BACKOFF_SECONDS, DEADLINE_SECONDS, sign
from tests.integration.conftest import Cluster, Kubescribe, scratch_namespace, wait_for


def test_the_webhook_arrives_once_signed_after_a_retry(kubescribe: Kubescribe, namespace: str) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    answers = [503]  # the first attempt fails; then 200

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(answers.pop(0) if answers else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((kubescribe.host_address, 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubescribe.submit(
            namespace,
            "hooked",
            webhookUrl=f"http://{kubescribe.host_address}:{server.server_port}/done",
            source={"s3": {"bucket": "audio", "key": f"{namespace}/absent.wav"}},
        )
        wait_for(
            lambda: (
                ((kubescribe.job(namespace, "hooked") or {}).get("status") or {}).get("webhook", {}).get("delivered")
            ),
            60,
            "the webhook to be delivered",
        )
        time.sleep(3)  # later reconcile passes must not send it again
    finally:
        server.shutdown()

    status = kubescribe.job(namespace, "hooked")["status"]
    assert status["webhook"]["attempts"] == 2
    assert len(received) == 2
    secret = kubescribe.cluster.get("secret", "kubescribe-webhook", "-n", namespace)
    key = base64.b64decode(secret["data"]["secret"])
    for headers, body in received:
        assert headers["X-Kubescribe-Signature"] == sign(key, headers["X-Kubescribe-Timestamp"], body)
    delivered = json.loads(received[-1][1])
    assert (delivered["namespace"], delivered["name"]) == (namespace, "hooked")
    assert delivered["status"]["phase"] == "Failed"
    assert delivered["status"]["reason"] == "SourceNotFound"


def test_a_webhook_to_loopback_is_refused_once_with_a_warning(kubescribe: Kubescribe, namespace: str) -> None:
    received: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubescribe.submit(
            namespace,
            "loopback-hook",
            webhookUrl=f"http://127.0.0.1:{server.server_port}/done?token=secret",
            source={"s3": {"bucket": "audio", "key": f"{namespace}/absent.wav"}},
        )
        webhook = wait_for(
            lambda: ((kubescribe.job(namespace, "loopback-hook") or {}).get("status") or {}).get("webhook"),
            60,
            "the webhook's record",
        )
        time.sleep(3)  # later reconcile passes must not try again
    finally:
        server.shutdown()

    message = "webhookUrl resolves to 127.0.0.1, a loopback address, which jobs may not reach"
    assert webhook == {"delivered": False, "attempts": 0, "lastError": message, "refused": True}
    assert kubescribe.job(namespace, "loopback-hook")["status"]["webhook"] == webhook
    assert received == []
    warning = wait_for(lambda: kubescribe.warnings(namespace, "loopback-hook").get("WebhookRefused"), 10, "a warning")
    assert warning == message


class Trickler(socketserver.ThreadingTCPServer):
    """A receiver that reads the request, then sends its answer a byte a second, never finishing it."""

    daemon_threads = True

    def __init__(self, host: str) -> None:
        self.stopping = threading.Event()
        self.attempts = 0
        stopping = self.stopping
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                server.attempts += 1
                self.request.recv(65536)
                while not stopping.wait(1):
                    try:
                        self.wfile.write(b"H")
                    except OSError:
                        return

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


def absent(namespace: str) -> dict[str, Any]:
    """A source the namespace may read that is not there: its job fails at once."""
    return {"s3": {"bucket": "audio", "key": f"{namespace}/absent.wav"}}


def webhook_of(kubescribe: Kubescribe, namespace: str, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = ((kubescribe.job(namespace, name) or {}).get("status") or {}).get("webhook")
    return found


def test_a_namespaces_slow_and_failing_receivers_do_not_hold_up_anothers(
    kubescribe: Kubescribe, cluster: Cluster
) -> None:
    """team A's receivers trickle or fail, more of them than there were once workers to wait on them; team B's
    delivery is made while all of A's are still being retried, and the trickling attempts end at the deadline."""
    failures: list[str] = []

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            failures.append(self.path)
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Quick(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    host = kubescribe.host_address
    trickler = Trickler(host)
    failing = ThreadingHTTPServer((host, 0), Failing)
    quick = ThreadingHTTPServer((host, 0), Quick)
    for server in (failing, quick):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    hooks_of_a = {
        "trickling": f"http://{host}:{trickler.server_address[1]}/a",
        **{f"failing-{n}": f"http://{host}:{failing.server_port}/{n}" for n in range(3)},
    }
    try:
        with scratch_namespace(cluster, "hooks-a") as team_a, scratch_namespace(cluster, "hooks-b") as team_b:
            for name, url in hooks_of_a.items():
                kubescribe.submit(team_a, name, webhookUrl=url, source=absent(team_a))
            wait_for(lambda: trickler.attempts and len(set(failures)) == 3, 120, "team A's first attempts")
            kubescribe.submit(team_b, "quick", webhookUrl=f"http://{host}:{quick.server_port}/b", source=absent(team_b))
            wait_for(lambda: (webhook_of(kubescribe, team_b, "quick") or {}).get("delivered"), 120, "B's delivery")
            assert {name: webhook_of(kubescribe, team_a, name) for name in hooks_of_a} == dict.fromkeys(hooks_of_a)

            given_up = len(BACKOFF_SECONDS) + 1
            records = {
                name: wait_for(lambda name=name: webhook_of(kubescribe, team_a, name), 300, f"{name}'s record")
                for name in hooks_of_a
            }
    finally:
        trickler.stop()
        for server in (failing, quick):
            server.shutdown()
    deadline = f"TimeoutError: the exchange did not end within its deadline of {DEADLINE_SECONDS} s"
    assert records["trickling"] == {"delivered": False, "attempts": given_up, "lastError": deadline, "refused": False}
    for name in hooks_of_a.keys() - {"trickling"}:
        assert records[name] == {"delivered": False, "attempts": given_up, "lastError": "HTTP 500", "refused": False}
    assert trickler.attempts == given_up
