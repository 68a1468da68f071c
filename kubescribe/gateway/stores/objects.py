"""S3: the uploaded audio, streamed to the store in parts while it is received, and the transcripts read back; the
multipart uploads a gateway left incomplete, found and aborted."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO
from urllib.parse import quote

import urllib3
from minio import Minio
from minio.datatypes import Part
from urllib3 import BaseHTTPResponse

from kubescribe import s3
from kubescribe.gateway.errors import Unavailable
from kubescribe.gateway.settings import GatewaySettings

log = logging.getLogger("kubescribe.gateway.objects")

PART_SIZE = 8 << 20
CHUNK = 64 << 10
OBJECT_STORE = "the object store"
STORE_TIMEOUT = urllib3.Timeout(connect=5, read=60)
UPLOAD_KEY = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/uploads/[^/]+/audio$")
"""The keys of the gateway's uploads (`kubescribe.contract.uploaded_source_key`)."""


class StorePool(urllib3.PoolManager):
    """The store client's connections, with the gateway's timeouts; a store that cannot be reached, does not answer
    in time or fails (5xx, after the pool's retries) is raised as Unavailable, which routes answer with 503."""

    def urlopen(self, method: str, url: str, *args: Any, **kw: Any) -> BaseHTTPResponse:
        try:
            response = super().urlopen(method, url, *args, **kw)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _unavailable(error) from error
        if response.status >= 500:
            response.drain_conn()
            response.release_conn()
            raise _unavailable(f"HTTP {response.status}")
        return response


def _unavailable(cause: object) -> Unavailable:
    log.warning("%s is unavailable: %s", OBJECT_STORE, cause)
    return Unavailable(OBJECT_STORE)


def object_store(settings: GatewaySettings) -> Minio:
    pool = StorePool(**{**s3.pool_settings(), "timeout": STORE_TIMEOUT})
    return s3.client(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        http_client=pool,
    )


def reachable(store: Minio, bucket: str) -> bool:
    try:
        return bool(store.bucket_exists(bucket))
    except Exception:
        return False


class StreamingUpload:
    """An S3 multipart upload of a file while it is still being written: each 8 MiB part is read back from the file
    once written (one part in memory, one in flight), in a thread of its own. The object exists only once `commit`
    completes the upload; `discard` aborts it."""

    def __init__(self, store: Minio, bucket: str, key: str, file: BinaryIO, *, filename: str) -> None:
        self.store, self.bucket, self.key = store, bucket, key
        self._fd = os.dup(file.fileno())
        self._headers = {"Content-Type": "application/octet-stream", "x-amz-meta-filename": quote(filename)}
        self._changed = threading.Condition()
        self._written, self._finished, self._cancelled, self._committed = 0, False, False, False
        self._upload_id: str | None = None
        self._parts: list[Part] = []
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"upload {key}", daemon=True)
        self._thread.start()

    def written(self, size: int, *, finished: bool = False) -> None:
        """The file's first `size` bytes are written (and flushed); `finished`: that is all of it."""
        with self._changed:
            self._written, self._finished = size, self._finished or finished
            self._changed.notify()

    def _next_part(self, offset: int) -> int:
        """The size of the part at `offset` once it is written; 0 when there is none (or the upload is discarded)."""
        with self._changed:
            self._changed.wait_for(lambda: self._cancelled or self._finished or self._written - offset >= PART_SIZE)
            return 0 if self._cancelled else min(self._written - offset, PART_SIZE)

    def _run(self) -> None:
        offset = 0
        try:
            while size := self._next_part(offset):
                data = os.pread(self._fd, size, offset)
                if len(data) != size:
                    raise OSError(f"read {len(data)} of {size} bytes at {offset}")
                if self._upload_id is None:
                    self._upload_id = self.store._create_multipart_upload(self.bucket, self.key, dict(self._headers))
                number = len(self._parts) + 1
                etag = self.store._upload_part(self.bucket, self.key, data, None, self._upload_id, number)
                self._parts.append(Part(number, etag))
                offset += size
        except Exception as error:
            self._error = error
        finally:
            os.close(self._fd)

    def commit(self) -> None:
        """Waits for the last part and completes the upload: the object exists from then on. Blocking."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._cancelled or self._upload_id is None:
            raise RuntimeError(f"the upload of {self.key} was discarded or is empty")
        self.store._complete_multipart_upload(self.bucket, self.key, self._upload_id, self._parts)
        self._committed = True

    def discard(self) -> None:
        """Stops the upload and aborts it unless it was committed; idempotent. Blocking."""
        with self._changed:
            self._cancelled = True
            self._changed.notify()
        self._thread.join()
        if self._upload_id is not None and not self._committed:
            with contextlib.suppress(Exception):
                self.store._abort_multipart_upload(self.bucket, self.key, self._upload_id)
            self._upload_id = None


@dataclass(frozen=True)
class IncompleteUpload:
    key: str
    upload_id: str
    initiated: datetime


def incomplete_uploads(store: Minio, bucket: str) -> list[IncompleteUpload]:
    """The multipart uploads of the gateway's upload keys (`<namespace>/uploads/<job id>/audio`) begun and neither
    completed nor aborted. The whole bucket is listed: MinIO lists a prefix's uploads only for an exact key."""
    found: list[IncompleteUpload] = []
    key_marker = None
    while True:
        # Pages go by key only (each upload has a key of its own): the client does not read NextUploadIdMarker.
        listed = store._list_multipart_uploads(bucket, key_marker=key_marker)
        found += [
            IncompleteUpload(upload.object_name, upload.upload_id, upload.initiated_time)
            for upload in listed.uploads
            if UPLOAD_KEY.match(upload.object_name) and upload.upload_id and upload.initiated_time
        ]
        if not listed.is_truncated or not listed.next_key_marker:
            return found
        key_marker = listed.next_key_marker


def abort_abandoned_uploads(store: Minio, bucket: str, older_than: timedelta, now: datetime) -> list[str]:
    """Aborts the gateway's incomplete uploads begun before `now - older_than` (left by a gateway that stopped
    mid-upload: no job names them); returns their keys."""
    abandoned = [upload for upload in incomplete_uploads(store, bucket) if upload.initiated < now - older_than]
    for upload in abandoned:
        store._abort_multipart_upload(bucket, upload.key, upload.upload_id)
        log.info("aborted the incomplete upload of s3://%s/%s begun at %s", bucket, upload.key, upload.initiated)
    return [upload.key for upload in abandoned]


def parse_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_text(store: Minio, uri: str) -> str:
    return b"".join(chunks(open_object(store, uri))).decode()


def open_object(store: Minio, uri: str) -> BaseHTTPResponse:
    bucket, key = parse_uri(uri)
    return store.get_object(bucket, key)


def chunks(response: BaseHTTPResponse) -> Iterator[bytes]:
    """The object's bytes, a part at a time; the connection goes back to the pool at the end."""
    try:
        yield from response.stream(CHUNK)
    finally:
        response.close()
        response.release_conn()
