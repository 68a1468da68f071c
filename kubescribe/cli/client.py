"""The gateway's HTTP client, with the standard library only, and the server-sent events it reads."""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The CLI keeps to the standard library when it talks to the gateway, so it copies the phases of
# kubescribe.api.v1alpha1.Phase here (a unit test checks that the copy matches). Whether a job is finished, the
# gateway's job view says.
PHASES = ("Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled")
CHUNK = 256 * 1024
BATCH_POLL_SECONDS = 2
RETRIED_STATUSES = (429, 503)


class CliError(Exception):
    """A failure to report in one line, without a traceback; `status`, the gateway's HTTP status if it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """The events of a text/event-stream, given line by line (with or without line endings)."""
    event, data = "", list[str]()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


def _error_message(status: int, body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{status} {error.get('type', 'error')}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = body.decode(errors="replace").strip()
        return f"{status}: {text[:300]}" if text else f"HTTP {status}"


class GatewayClient:
    """A client of the REST gateway, with the API key sent on every request."""

    def __init__(self, url: str, api_key: str, timeout: float = 60) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def open(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        *,
        data: Iterable[bytes] | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The response, open for reading; an HTTP error becomes a CliError with the gateway's message."""
        query = {k: v for k, v in (query or {}).items() if v}
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Authorization": f"Bearer {self.api_key}", "User-Agent": "kubescribe-cli", **(headers or {})}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (http(s) only)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)  # noqa: S310
        except urllib.error.HTTPError as error:
            raise CliError(_error_message(error.code, error.read()), error.code) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach the gateway at {self.url}: {reason}") from None

    def json(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        with self.open(method, path, query) as response:
            body = response.read()
        return json.loads(body) if body else None

    def submit(self, audio: Path, fields: dict[str, str], on_sent: Callable[[float], None]) -> dict[str, Any]:
        """Uploads `audio` as multipart form data, streamed from disk; `on_sent` gets the share sent so far."""
        job: dict[str, Any] = self._upload("/v1/jobs", [audio], fields, on_sent)
        return job

    def submit_batch(
        self, audio: Sequence[Path], fields: dict[str, str], on_sent: Callable[[float], None]
    ) -> dict[str, Any]:
        """Uploads the files as one batch, one form streamed from disk; `on_sent` gets the share sent so far."""
        batch: dict[str, Any] = self._upload("/v1/batches", audio, fields, on_sent)
        return batch

    def _upload(
        self, path: str, audio: Sequence[Path], fields: dict[str, str], on_sent: Callable[[float], None]
    ) -> Any:
        boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        heads = []
        for index, file in enumerate(audio):
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            quoted = file.name.replace('"', "%22")
            heads.append(
                (b"\r\n" if index else b"")
                + (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
                    f"Content-Type: {content_type}\r\n\r\n"
                ).encode()
            )
        tail = f"\r\n--{boundary}--\r\n".encode()
        sizes = [file.stat().st_size for file in audio]
        size = sum(sizes) or 1

        def body() -> Iterator[bytes]:
            yield head
            sent = 0
            for file, file_head in zip(audio, heads, strict=True):
                yield file_head
                with file.open("rb") as opened:
                    while chunk := opened.read(CHUNK):
                        sent += len(chunk)
                        on_sent(sent / size)
                        yield chunk
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + sum(len(h) for h in heads) + sum(sizes) + len(tail)),
        }
        with self.open("POST", path, data=body(), headers=headers, timeout=max(self.timeout, 600)) as response:
            return json.loads(response.read())

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}")
        return job

    def events(self, job_id: str) -> Iterator[SseEvent]:
        with self.open(
            "GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/events", headers={"Accept": "text/event-stream"}
        ) as response:
            yield from parse_sse(line.decode() for line in response)

    def follow(self, job_id: str, on_status: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Follows the job's events until it finishes; reconnects when the stream drops. Returns the final view."""
        while True:
            try:
                for event in self.events(job_id):
                    if event.event == "status":
                        job: dict[str, Any] = json.loads(event.data)
                        on_status(job)
                        if job.get("finished"):
                            return job
                    elif event.event == "end":
                        break
            except (CliError, OSError, ValueError):
                pass  # a dropped or timed-out stream; the job is read once more below
            job = self.job(job_id)
            on_status(job)
            if job.get("finished"):
                return job
            time.sleep(1)

    def batch(self, batch_id: str) -> dict[str, Any]:
        batch: dict[str, Any] = self.json("GET", f"/v1/batches/{urllib.parse.quote(batch_id)}")
        return batch

    def follow_batch(self, batch_id: str, on_status: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Reads the batch every few seconds until all its jobs are finished; rides out a refusal to be asked so
        often (the batch's jobs took the key's rate) or a gateway briefly unavailable. Returns the final view."""
        while True:
            try:
                batch = self.batch(batch_id)
            except CliError as error:
                if error.status not in RETRIED_STATUSES:
                    raise
                time.sleep(BATCH_POLL_SECONDS)
                continue
            on_status(batch)
            if batch.get("finished"):
                return batch
            time.sleep(BATCH_POLL_SECONDS)

    def transcript(self, job_id: str, format_: str) -> bytes:
        path = f"/v1/jobs/{urllib.parse.quote(job_id)}/transcript"
        with self.open("GET", path, {"format": format_}) as response:
            body: bytes = response.read()
        return body
