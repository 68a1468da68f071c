"""Plain HTTP transfers for the runner: a presigned URL or the source URL streamed to disk, a transcript PUT to a
presigned URL. URLs stay out of every message: a presigned URL carries its credentials in its query. The source
URL is the tenant's: it goes only where the operator's egress rules permit."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

from kubescribe import egress
from kubescribe.contract import EXIT_BAD_INPUT, EXIT_SOURCE_NOT_FOUND, EgressRules
from kubescribe.runner.errors import RunnerFailure

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60


def download(url: str, destination: Path, what: str) -> None:
    """Streams the operator's presigned `url` to `destination`; `what` names it in errors (never the URL itself)."""
    try:
        # S310: the operator's presigned URLs are http(s).
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response, destination.open("wb") as file:  # noqa: S310
            shutil.copyfileobj(response, file, CHUNK_BYTES)
    except urllib.error.HTTPError as error:
        raise _failure(error.code, error.reason, what, presigned=True) from None


def download_source(url: str, destination: Path, rules: EgressRules) -> None:
    """Streams the spec's source URL to `destination`, connecting only where `rules` permit."""
    what = "the source URL"
    try:
        with egress.request(url, rules, timeout=HTTP_TIMEOUT_SECONDS) as response:
            if not 200 <= response.status < 300:
                raise _failure(response.status, response.reason, what, presigned=False)
            with destination.open("wb") as file:
                shutil.copyfileobj(response, file, CHUNK_BYTES)
    except egress.Refused as refused:
        raise RunnerFailure(EXIT_BAD_INPUT, "SourceForbidden", f"source.url {refused}") from None


def upload(url: str, data: bytes, content_type: str, what: str) -> None:
    request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": content_type})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS):  # noqa: S310
            pass
    except urllib.error.HTTPError as error:
        raise _failure(error.code, error.reason, what, presigned=True) from None


def _failure(code: int, reason: str, what: str, *, presigned: bool) -> Exception:
    if code in (404, 410):
        return RunnerFailure(EXIT_SOURCE_NOT_FOUND, "SourceNotFound", f"{what} answered HTTP {code}")
    if code == 403 and presigned:
        return RunnerFailure(
            EXIT_BAD_INPUT,
            "StoreAccessDenied",
            f"the store refused the job's access to {what} (HTTP 403): it ends with the job's deadline",
        )
    return RuntimeError(f"{what} answered HTTP {code} {reason}")
