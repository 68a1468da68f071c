"""The completion webhook: posted by the operator once, signed with the namespace's secret, retried on failure, and
refused where jobs may not connect."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubescribe.operator.webhook import sign
from tests.integration.conftest import Kubescribe, wait_for


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
