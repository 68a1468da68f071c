import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from kubescribe.operator.webhook import BACKOFF_SECONDS, Deliverer, is_due, payload, sign

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
        assert Deliverer._post(url, b"k", "u-1", b"{}") == "HTTP 503"
        assert Deliverer._post(url, b"k", "u-1", b"{}") is None
    finally:
        server.shutdown()
    headers, body = received[1]
    assert body == b"{}"
    assert headers["X-Kubescribe-Delivery"] == "u-1"
    assert headers["X-Kubescribe-Signature"] == sign(b"k", headers["X-Kubescribe-Timestamp"], b"{}")
    assert Deliverer._post("http://127.0.0.1:9/closed", b"k", "u-1", b"{}").startswith("URLError")
