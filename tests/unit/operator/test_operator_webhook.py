import hashlib
import hmac
import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

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


class Deliveries:
    """A Deliverer of its own, and what it recorded: `status.webhook` by job name, and the Events."""

    def __init__(self, rules: EgressRules = LOOPBACK_ALLOWED, **options: object) -> None:
        self.records: dict[str, dict] = {}
        self.events: list[tuple] = []
        self.recorded = threading.Condition()
        self.deliverer = Deliverer(
            rules, secret=lambda namespace: b"k", record=self._record, event=self._event, **options
        )

    def _record(self, tj, record):
        with self.recorded:
            self.records[tj["metadata"]["name"]] = record
            self.recorded.notify_all()

    def _event(self, *event):
        self.events.append(event)

    def submit(self, namespace: str, name: str, url: str, **status: object) -> None:
        self.deliverer.submit(
            {
                "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
                "spec": {"webhookUrl": url},
                "status": {"phase": "Succeeded", **status},
            }
        )

    def wait_for(self, *names: str) -> dict[str, dict]:
        with self.recorded:
            assert self.recorded.wait_for(lambda: all(name in self.records for name in names), timeout=60), names
            return {name: self.records[name] for name in names}


class Receivers:
    """Real HTTP receivers on loopback: `answer(status)` answers each POST with `status`; `trickle()` reads the
    request, then sends its answer a byte at a time until closed. Each knows the deliveries it saw and how many of its
    connections the sender has closed."""

    def __init__(self) -> None:
        self.servers: list[socketserver.TCPServer] = []
        self.seen: dict[str, list[str]] = {}
        self.closed: dict[str, int] = {}
        self.stopping = threading.Event()

    def _serve(self, name: str, respond) -> str:
        seen, closed = self.seen.setdefault(name, []), self.closed
        closed[name] = 0

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                headers = {}
                while (line := self.rfile.readline().decode()) not in ("\r\n", ""):
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
                self.rfile.read(int(headers.get("content-length", 0)))
                seen.append(headers.get("x-kubescribe-delivery", ""))
                try:
                    respond(self.wfile)
                except OSError:
                    closed[name] += 1

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    def answer(self, name: str, status: int) -> str:
        def respond(out) -> None:
            out.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

        return self._serve(name, respond)

    def trickle(self, name: str) -> str:
        def respond(out) -> None:
            while not self.stopping.is_set():
                for byte in b"HTTP/1.1 200 OK\r\n":
                    out.write(bytes([byte]))
                    out.flush()
                    time.sleep(0.05)

        return self._serve(name, respond)

    def close(self) -> None:
        self.stopping.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def receivers():
    found = Receivers()
    yield found
    found.close()


def test_a_refused_webhook_is_recorded_once_with_a_warning_and_not_retried():
    deliveries = Deliveries(EgressRules())
    try:
        deliveries.submit("team-a", "talk", "http://169.254.169.254/latest?key=secret", phase="Failed")
        record = deliveries.wait_for("talk")["talk"]
    finally:
        deliveries.deliverer.stop()
    message = "webhookUrl resolves to 169.254.169.254, a link-local address, which jobs may not reach"
    assert record == {"delivered": False, "attempts": 0, "lastError": message, "refused": True}
    assert [event[1:] for event in deliveries.events] == [("Warning", REFUSED, message)]
    assert not is_due({**TJ, "status": {"webhook": record}})


def test_slow_receivers_of_one_namespace_do_not_hold_up_anothers(receivers: Receivers):
    """Two workers, one attempt in flight per namespace: while both of team-a's receivers trickle, team-b's
    delivery goes out on the other worker, before either trickling attempt has ended."""
    deliveries = Deliveries(workers=2, per_namespace=1, deadline=60)
    try:
        deliveries.submit("team-a", "slow-1", receivers.trickle("slow-1"))
        deliveries.submit("team-a", "slow-2", receivers.trickle("slow-2"))
        deliveries.submit("team-b", "quick", receivers.answer("quick", 204))
        record = deliveries.wait_for("quick")["quick"]
        assert record["delivered"] is True
        assert receivers.closed == {"slow-1": 0, "slow-2": 0, "quick": 0}
        assert len(receivers.seen["slow-1"]) + len(receivers.seen["slow-2"]) == 1
    finally:
        receivers.close()
        deliveries.deliverer.stop()


def test_a_trickling_receiver_is_cut_at_the_deadline_and_a_failing_one_given_up(receivers: Receivers):
    deliveries = Deliveries(deadline=0.5, backoff=(0.01, 0.01))
    try:
        deliveries.submit("team-a", "slow", receivers.trickle("slow"))
        deliveries.submit("team-a", "failing", receivers.answer("failing", 500))
        deliveries.submit("team-b", "quick", receivers.answer("quick", 200))
        records = deliveries.wait_for("slow", "failing", "quick")
    finally:
        deliveries.deliverer.stop()
    assert records["slow"] == {
        "delivered": False,
        "attempts": 3,
        "lastError": "TimeoutError: the exchange did not end within its deadline of 0.5 s",
    }
    assert records["failing"] == {"delivered": False, "attempts": 3, "lastError": "HTTP 500"}
    assert records["quick"]["delivered"] is True
    assert records["quick"]["attempts"] == 1
    assert receivers.seen["slow"] == ["uid-slow"] * 3


def test_a_delivery_is_resumed_from_its_recorded_attempts_and_not_sent_again_once_ended(receivers: Receivers):
    deliveries = Deliveries(workers=1, backoff=(0.01, 0.01))
    url = receivers.answer("hook", 200)
    try:
        deliveries.submit("team-a", "resumed", url, webhook={"delivered": False, "attempts": 2})
        deliveries.wait_for("resumed")
        deliveries.submit("team-a", "resumed", url)  # a pass that read the job before its record
        deliveries.submit("team-a", "next", url)
        records = deliveries.wait_for("next")
    finally:
        deliveries.deliverer.stop()
    assert deliveries.records["resumed"]["attempts"] == 3
    assert records["next"]["attempts"] == 1
    assert receivers.seen["hook"] == ["uid-resumed", "uid-next"]
