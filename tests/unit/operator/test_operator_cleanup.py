"""The finalizer's bounds: it tries again with backoff while the store fails, gives up once its time is over, and
says what it left where."""

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubescribe.operator import cleanup, clients
from kubescribe.operator.cleanup import Leftovers
from kubescribe.operator.settings import OperatorSettings

TJ = {
    "metadata": {"name": "talk", "namespace": "team-a", "uid": "u-1"},
    "spec": {"source": {"s3": {"bucket": "audio", "key": "team-a/talk.wav"}}, "outputs": {"formats": ["json", "txt"]}},
}


def test_the_delay_doubles_from_five_seconds_up_to_a_minute():
    assert [cleanup.retry_delay(retry) for retry in range(7)] == [5, 10, 20, 40, 60, 60, 60]
    assert cleanup.retry_delay(1000) == 60


def test_it_gives_up_when_the_next_try_would_come_past_the_timeout():
    assert not cleanup.gives_up(elapsed=0, retry=0, timeout=300)
    assert not cleanup.gives_up(elapsed=240, retry=5, timeout=300)
    assert cleanup.gives_up(elapsed=241, retry=5, timeout=300)
    assert cleanup.gives_up(elapsed=0, retry=0, timeout=0)


def test_the_message_counts_the_objects_left_and_names_a_few():
    one = Leftovers(["s3://transcripts/team-a/talk/talk.json"], "AccessDenied")
    assert cleanup.abandoned_message(one, 300) == (
        "the store did not delete the job's objects within 300 s (AccessDenied): the job is gone, "
        "1 object left in the store: s3://transcripts/team-a/talk/talk.json"
    )
    many = Leftovers([f"s3://transcripts/team-a/talk/{n}.txt" for n in range(7)], "InvalidAccessKeyId")
    message = cleanup.abandoned_message(many, 60)
    assert "7 objects left in the store: s3://transcripts/team-a/talk/0.txt, " in message
    assert message.endswith("s3://transcripts/team-a/talk/4.txt and 2 more")


def test_a_store_it_cannot_reach_leaves_every_object():
    settings = OperatorSettings(s3_endpoint="http://127.0.0.1:9", request_timeout_seconds=5)
    left = cleanup.delete_objects(TJ, settings, clients.store(settings))
    assert left == Leftovers(
        ["s3://transcripts/team-a/talk/talk.json", "s3://transcripts/team-a/talk/talk.txt"], "NewConnectionError"
    )


def test_a_job_whose_spec_cannot_be_read_has_nothing_to_delete():
    settings = OperatorSettings(s3_endpoint="http://127.0.0.1:9")
    broken = {**TJ, "spec": {"source": {"s3": {"bucket": "audio"}}}}
    assert cleanup.delete_objects(broken, settings, clients.store(settings)) is None


class StoreWithoutBulkDelete(BaseHTTPRequestHandler):
    """An S3 endpoint that, like Google Cloud Storage's, answers NotImplemented to DeleteObjects (POST ?delete)
    and deletes one object per DELETE, except those in the server's `refused`; it holds the server's `objects`."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(501, b"<Error><Code>NotImplemented</Code><Message>not here</Message></Error>")

    def do_DELETE(self) -> None:
        key = urllib.parse.unquote(self.path.split("?")[0]).removeprefix("/")
        server: Any = self.server
        if key in server.refused:
            self._answer(403, b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>")
            return
        server.objects.discard(key)
        self._answer(204, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_a_store_without_bulk_deletion_has_the_objects_deleted_one_by_one():
    with ThreadingHTTPServer(("127.0.0.1", 0), StoreWithoutBulkDelete) as server:
        store: Any = server
        store.objects = {"transcripts/team-a/talk/talk.json", "transcripts/team-a/talk/talk.txt", "audio/kept.wav"}
        store.refused = set()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        settings = OperatorSettings(s3_endpoint=f"http://127.0.0.1:{server.server_port}", request_timeout_seconds=5)
        try:
            left = cleanup.delete_objects(TJ, settings, clients.store(settings))
            assert left is None
            assert store.objects == {"audio/kept.wav"}

            store.refused = {"transcripts/team-a/talk/talk.txt"}
            left = cleanup.delete_objects(TJ, settings, clients.store(settings))
            assert left == Leftovers(["s3://transcripts/team-a/talk/talk.txt"], "AccessDenied")
        finally:
            server.shutdown()
