"""Plain HTTP transfers for the runner: a source URL or a presigned URL streamed to disk, a transcript PUT to a
presigned URL. URLs stay out of every message: a presigned URL carries its credentials in its query."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

from kubescribe.contract import EXIT_BAD_INPUT, EXIT_SOURCE_NOT_FOUND
from kubescribe.runner.errors import RunnerFailure

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60


def download(url: str, destination: Path, what: str) -> None:
    """Streams `url` to `destination`; `what` names it in errors (never the URL itself)."""
    try:
        # S310: only http(s) URLs reach here: the spec's pattern, or the operator's presigned URLs.
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response, destination.open("wb") as file:  # noqa: S310
            shutil.copyfileobj(response, file, CHUNK_BYTES)
    except urllib.error.HTTPError as error:
        raise _failure(error, what) from None


def upload(url: str, data: bytes, content_type: str, what: str) -> None:
    request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": content_type})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS):  # noqa: S310
            pass
    except urllib.error.HTTPError as error:
        raise _failure(error, what) from None


def _failure(error: urllib.error.HTTPError, what: str) -> Exception:
    if error.code in (404, 410):
        return RunnerFailure(EXIT_SOURCE_NOT_FOUND, "SourceNotFound", f"{what} answered HTTP {error.code}")
    if error.code == 403 and "X-Amz-Signature" in (error.url or ""):
        return RunnerFailure(
            EXIT_BAD_INPUT,
            "StoreAccessDenied",
            f"the store refused the job's access to {what} (HTTP 403): it ends with the job's deadline",
        )
    return RuntimeError(f"{what} answered HTTP {error.code} {error.reason}")
