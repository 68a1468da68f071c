"""The model cache's HTTP side. `POST /v1/objects` with `{"url": <a presigned GET URL of the store>}` answers the
object's bytes: from the node's cache when it holds the object's current version, else read from the store once,
into the cache, for every caller after.

A caller proves that it may read the object: every request first asks the store for the object's first byte with
the caller's own URL, and the cache answers only when the store does. So a cached object is served only to whoever
may read it now, and only in the version the store holds now (the cache's key is the object's location and ETag).
The cache fetches nothing but URLs of its one store, so no caller can send it elsewhere; the URLs, which carry
their signatures, appear in no log and no answer."""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, make_asgi_app
from pydantic import BaseModel, Field

from kubescribe.modelcache.disk import Disk
from kubescribe.modelcache.settings import CacheSettings

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class ObjectRequest(BaseModel):
    url: str = Field(max_length=16384)
    """A presigned GET URL of the store."""


@dataclass(frozen=True)
class Version:
    """What the store says of an object: its ETag and size."""

    etag: str
    size: int


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A store never redirects a presigned GET; a redirect would lead away from the one origin the cache reads."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def store_location(url: str, endpoint: str) -> str:
    """The object's path in the store (/bucket/key) when `url` is a URL of the store at `endpoint`; else a 400."""
    parts, store = urlsplit(url), urlsplit(endpoint)
    same_origin = (parts.scheme.lower(), parts.netloc.lower()) == (store.scheme.lower(), store.netloc.lower())
    if not same_origin or "@" in parts.netloc or not parts.path.strip("/"):
        raise HTTPException(400, "the URL is not an object of the store this cache reads")
    return parts.path


def probe(url: str, timeout: float) -> Version:
    """The object's version, asked of the store with the caller's URL (its first byte only)."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})  # noqa: S310 - the store's origin, checked
    try:
        with _opener.open(request, timeout=timeout) as response:
            etag = response.headers.get("ETag")
            length = response.headers.get("Content-Range", "").rpartition("/")[2] or response.headers.get(
                "Content-Length", ""
            )
    except urllib.error.HTTPError as error:
        if error.code in (403, 404):
            raise HTTPException(error.code, "the store refused the URL") from None
        raise HTTPException(502, f"the store answered HTTP {error.code}") from None
    except OSError as error:
        raise HTTPException(502, f"the store could not be reached ({type(error).__name__})") from None
    if not etag or not length.isdigit():
        raise HTTPException(502, "the store did not say the object's version and size")
    return Version(etag, int(length))


def copy_from_store(url: str, version: Version, timeout: float, out: BinaryIO) -> None:
    """The whole object into `out`; fails when the store now holds another version than `version`."""
    with _opener.open(urllib.request.Request(url), timeout=timeout) as response:  # noqa: S310
        if response.headers.get("ETag") != version.etag:
            raise HTTPException(503, "the object changed while it was read; ask again")
        shutil.copyfileobj(response, out, CHUNK_BYTES)
    if out.tell() != version.size:
        raise HTTPException(502, "the store sent fewer bytes than the object holds")


def _chunks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def create_app(settings: CacheSettings, disk: Disk) -> FastAPI:
    app = FastAPI(title="Kubescribe model cache", docs_url=None, redoc_url=None, openapi_url=None)
    registry = CollectorRegistry()
    answers = Counter(
        "kubescribe_model_cache_requests",
        "Object requests by outcome: hit (from the cache), fill (read from the store into it), refused (the store "
        "refused the caller's URL), too_large (above the cache's cap; not served), error",
        ["outcome"],
        registry=registry,
    )
    cached_bytes = Gauge("kubescribe_model_cache_bytes", "Bytes the cached objects take", registry=registry)
    store_bytes = Counter(
        "kubescribe_model_cache_store_bytes", "Bytes of objects read from the store into the cache", registry=registry
    )
    evictions = Counter(
        "kubescribe_model_cache_evictions", "Objects evicted to keep the cache under its cap", registry=registry
    )
    cached_bytes.set(disk.usage())
    app.mount("/metrics", make_asgi_app(registry))

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.post("/v1/objects")
    def objects(request: ObjectRequest) -> StreamingResponse:
        timeout = settings.request_timeout_seconds
        try:
            location = store_location(request.url, settings.store_endpoint)
            version = probe(request.url, timeout)
        except HTTPException as refused:
            answers.labels("refused" if refused.status_code in (400, 403, 404) else "error").inc()
            raise
        if version.size > disk.max_bytes:
            answers.labels("too_large").inc()
            raise HTTPException(413, f"the object ({version.size} bytes) is larger than the cache")
        key = hashlib.sha256(f"{location}\n{version.etag}".encode()).hexdigest()
        file = disk.open(key)
        outcome = "hit"
        if file is None:
            try:
                filled = disk.fill(key, version.size, lambda out: copy_from_store(request.url, version, timeout, out))
            except HTTPException:
                answers.labels("error").inc()
                raise
            except OSError as error:
                answers.labels("error").inc()
                failure = f"the object could not be read from the store ({type(error).__name__})"
                raise HTTPException(502, failure) from None
            file = filled.file
            if filled.wrote:  # only a fill changes what the cache holds
                outcome = "fill"
                store_bytes.inc(version.size)
                evictions.inc(filled.evicted)
                cached_bytes.set(disk.usage())
        answers.labels(outcome).inc()
        log.info("object served", extra={"outcome": outcome, "bytes": version.size})
        headers = {"Content-Length": str(version.size), "X-Kubescribe-Cache": outcome}
        return StreamingResponse(_chunks(file), media_type="application/octet-stream", headers=headers)

    return app
