import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from unittest import mock

import pytest

from kubescribe import egress
from kubescribe.contract import EgressRules
from kubescribe.operator.webhook import BACKOFF_SECONDS, REFUSED, Deliverer, is_due, payload, sign

LOOPBACK_ALLOWED = EgressRules(allowed_private_ranges=["127.0.0.1/32"])
TJ = {
    "metadata": {"name": "talk", "namespace": "team-a", "uid": "u-1"},
    "spec": {"webhookUrl": "https://hooks.example/done"},
    "status": {"phase": "Succeeded", "result": {"language": "en"}, "webhook": {"delivered": False, "attempts": 1}},
}


def test_the_signature_is_an_hmac_of_timestamp_and_body():
    body = payload(TJ)
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"k", "1700000000", body) == f"sha256={expected}"
    assert sign(b"other", "1700000000", body) != sign(b"k", "1700000000", body)


def test_the_payload_is_the_final_status_without_the_delivery_record():
    body = json.loads(payload(TJ))
    assert body["name"] == "talk"
    assert body["uid"] == "u-1"
    assert body["status"] == {"phase": "Succeeded", "result": {"language": "en"}}


def test_a_delivery_is_due_until_delivered_or_given_up():
    assert is_due(TJ)
    assert not is_due({**TJ, "spec": {}})
    assert not is_due({**TJ, "status": {"webhook": {"delivered": True, "attempts": 1}}})
    assert not is_due({**TJ, "status": {"webhook": {"delivered": False, "attempts": len(BACKOFF_SECONDS) + 1}}})
    assert not is_due({**TJ, "status": {"webhook": {"delivered": False, "attempts": 0, "refused": True}}})


def test_post_sends_the_signed_headers_and_reports_http_errors():
    received = []
    answers = [503, 204]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(answers.pop(0))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        assert Deliverer._post(url, LOOPBACK_ALLOWED, b"k", "u-1", b"{}") == "HTTP 503"
        assert Deliverer._post(url, LOOPBACK_ALLOWED, b"k", "u-1", b"{}") is None
    finally:
        server.shutdown()
    headers, body = received[1]
    assert body == b"{}"
    assert headers["X-Kubescribe-Delivery"] == "u-1"
    assert headers["X-Kubescribe-Signature"] == sign(b"k", headers["X-Kubescribe-Timestamp"], b"{}")
    closed = Deliverer._post("http://127.0.0.1:9/closed", LOOPBACK_ALLOWED, b"k", "u-1", b"{}")
    assert closed.startswith("ConnectionRefusedError")


def test_post_to_a_forbidden_address_is_refused_before_connecting():
    with pytest.raises(egress.Refused, match=r"^resolves to 127\.0\.0\.1, a loopback address"):
        Deliverer._post("http://127.0.0.1:9/hook?token=secret", EgressRules(), b"k", "u-1", b"{}")


def test_a_refused_webhook_is_recorded_once_with_a_warning_and_not_retried():
    events, sleeps = [], []
    deliverer = Deliverer(mock.Mock(), EgressRules(), lambda *event: events.append(event), sleeps.append)
    deliverer.custom = mock.Mock()
    deliverer._namespace_secret = lambda namespace: b"k"
    job = {**TJ, "spec": {"webhookUrl": "http://169.254.169.254/latest?key=secret"}, "status": {"phase": "Failed"}}
    deliverer._deliver(job)
    *_, patch = deliverer.custom.patch_namespaced_custom_object_status.call_args.args
    record = patch["status"]["webhook"]
    message = "webhookUrl resolves to 169.254.169.254, a link-local address, which jobs may not reach"
    assert record == {"delivered": False, "attempts": 0, "lastError": message, "refused": True}
    assert events == [(job, "Warning", REFUSED, message)]
    assert sleeps == []
    assert not is_due({**job, "status": {"webhook": record}})
