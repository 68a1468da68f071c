"""Plain HTTP transfers for the runner: a presigned URL or the source URL streamed to disk, a transcript PUT to a
presigned URL. URLs stay out of every message: a presigned URL carries its credentials in its query. The source
URL is the tenant's: it goes only where the operator's egress rules permit."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubescribe import egress
from kubescribe.contract import EXIT_BAD_INPUT, EXIT_SOURCE_NOT_FOUND, EgressRules
from kubescribe.runner.errors import RunnerFailure

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60
"""How long one read may wait for bytes; `Cap.seconds` bounds the whole download."""


@dataclass(frozen=True)
class Cap:
    """The most a download may bring (`max_bytes`) and take (`seconds`, from its first request)."""

    max_bytes: int
    seconds: float


def download(url: str, destination: Path, what: str, cap: Cap | None = None) -> None:
    """Streams the operator's presigned `url` to `destination`, within `cap`; `what` names it in errors (never the
    URL itself)."""
    started = time.monotonic()
    try:
        # S310: the operator's presigned URLs are http(s).
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            _save_answer(response, destination, what, cap, started)
    except urllib.error.HTTPError as error:
        raise _failure(error.code, error.reason, what, presigned=True) from None


def download_cached(cache: str, url: str, destination: Path, what: str) -> None:
    """Streams the object of the presigned `url` to `destination` through the node's model cache at `cache`, which
    checks `url` with the store before it answers."""
    request = urllib.request.Request(  # noqa: S310 - the operator's URL of the node's cache
        f"{cache.rstrip('/')}/v1/objects",
        data=json.dumps({"url": url}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
        _save_answer(response, destination, what, None, time.monotonic())


def download_source(url: str, destination: Path, rules: EgressRules, cap: Cap) -> None:
    """Streams the spec's source URL to `destination` within `cap`, connecting only where `rules` permit."""
    what = "the source URL"
    started = time.monotonic()
    try:
        with egress.request(url, rules, timeout=HTTP_TIMEOUT_SECONDS) as response:
            if not 200 <= response.status < 300:
                raise _failure(response.status, response.reason, what, presigned=False)
            _save_answer(response, destination, what, cap, started)
    except egress.Refused as refused:
        raise RunnerFailure(EXIT_BAD_INPUT, "SourceForbidden", f"source.url {refused}") from None


def _save_answer(
    response: http.client.HTTPResponse, destination: Path, what: str, cap: Cap | None, started: float
) -> None:
    save(response.read1, destination, what, cap, content_length=response.getheader("Content-Length"), started=started)


def save(
    read: Callable[[int], bytes],
    destination: Path,
    what: str,
    cap: Cap | None,
    *,
    content_length: str | None,
    started: float,
) -> None:
    """Writes what `read` returns (as soon as any bytes arrive, so a trickle is seen) to `destination` until it
    returns nothing. Beyond `cap` it fails with SourceTooLarge (up front when the declared length already is) or
    SourceTooSlow, and no partial file is left."""
    declared = int(content_length) if content_length is not None and content_length.isdigit() else None
    if cap is not None and declared is not None and declared > cap.max_bytes:
        raise too_large(what, cap, declared)
    received = 0
    try:
        with destination.open("wb") as file:
            while chunk := read(CHUNK_BYTES):
                received += len(chunk)
                if cap is not None and received > cap.max_bytes:
                    raise too_large(what, cap)
                if cap is not None and time.monotonic() - started > cap.seconds:
                    raise too_slow(what, cap, received)
                file.write(chunk)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def too_large(what: str, cap: Cap, size: int | None = None) -> RunnerFailure:
    """SourceTooLarge, with the size when it is known."""
    found = f"is {human_bytes(size)}, more" if size is not None else "holds more"
    return RunnerFailure(
        EXIT_BAD_INPUT,
        "SourceTooLarge",
        f"{what} {found} than {human_bytes(cap.max_bytes)}, the largest source this cluster takes "
        "(runner.maxSourceBytes)",
    )


def too_slow(what: str, cap: Cap, received: int) -> RunnerFailure:
    return RunnerFailure(
        EXIT_BAD_INPUT,
        "SourceTooSlow",
        f"{what} did not finish downloading within {cap.seconds:.0f} s (runner.downloadTimeoutSeconds); "
        f"{human_bytes(received)} arrived",
    )


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
