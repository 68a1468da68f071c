"""A batch: many files (uploaded while the form streams in, see batch_upload.py) or sources (S3 objects and URLs, each
held to what one job's source is held to), one set of options, one TranscriptionJob each, all labelled with the
batch's id. Whatever refuses a batch refuses it whole, before any job exists: its options, its size, the namespace's
room for waiting jobs, each file (audio, within the upload limit) and, for sources, the API server's answer to each
job in a dry run (its schema and admission: the storage policy among them). The caller's rate limit is then charged
one request per job beyond the first, and the jobs are created a few at a time.

If creating a job fails (the API server gone), no more are begun: the answer names the jobs created and the files
that are not, and the uploads of those are deleted. The jobs created stay, so that nothing is lost or done twice; a
client submits the rest again. When none was created, the batch is answered with the error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from kubernetes.client.rest import ApiException

from kubescribe.api.v1alpha1 import BUCKET, HTTP_URL
from kubescribe.gateway import metrics
from kubescribe.gateway.access.caller import Access, Principal
from kubescribe.gateway.errors import INTERNAL_ERROR, ApiError
from kubescribe.gateway.intake.resource import (
    FILENAME_ANNOTATION,
    build_transcription_job,
    new_batch_id,
    new_job_id,
    sanitize_filename,
)
from kubescribe.gateway.intake.submission import (
    Submission,
    check_model,
    check_queue,
    s3_source,
    transcription_job_spec,
)
from kubescribe.gateway.intake.upload import StagedFile
from kubescribe.gateway.middleware import request_id
from kubescribe.gateway.state import Gateway

log = logging.getLogger("kubescribe.gateway.batch")

CREATE_CONCURRENCY = 8
"""Jobs of a batch created (or tried in a dry run) at once: enough to hide the API server's round trips, few enough
to leave it to others."""
S3_KEY_MAX_LENGTH = 1024
SOURCE = rf"^s3://{BUCKET[1:-1]}/.{{1,{S3_KEY_MAX_LENGTH}}}$|{HTTP_URL}"
"""A source: s3://<bucket>/<key> in the gateway's store, or an http(s) URL."""

T = TypeVar("T")


@dataclass(frozen=True)
class BatchFile:
    """One file of a batch, ready to be created: its place in the request, its job, and its upload (None for a
    source, which is named, not uploaded)."""

    index: int
    job: dict[str, Any]
    source: str | None = None
    upload: StagedFile | None = None

    @property
    def filename(self) -> str:
        return str(self.job["metadata"]["annotations"][FILENAME_ANNOTATION])


@dataclass(frozen=True)
class BatchSubmitted:
    """What became of a batch: the jobs created (as the API server answered) and the files that are not jobs, each
    with its error."""

    batch_id: str
    created: list[tuple[BatchFile, dict[str, Any]]]
    failed: list[tuple[BatchFile, ApiError]]


def source_spec(source: str) -> dict[str, Any]:
    """A job's spec.source for a source of a batch's request."""
    if source.startswith("s3://"):
        bucket, _, key = source.removeprefix("s3://").partition("/")
        return s3_source(bucket, key)
    return {"url": source}


def source_filename(source: str) -> str:
    """The file name a source's job shows: the last segment of its key or of its URL's path."""
    if source.startswith("s3://"):
        return sanitize_filename(source.removeprefix("s3://").partition("/")[2])
    try:
        path = unquote(urlsplit(source).path)
    except ValueError:  # a host urllib cannot read, such as an unclosed [: the runner refuses it as it would any job's
        path = ""
    return sanitize_filename(path)


def refused(error: Exception) -> ApiError:
    """The error a file of a batch is answered with: the gateway's own, or the API server's refusal of its job."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ApiException) and error.status in (400, 403, 409, 422):
        try:
            message = str(json.loads(error.body)["message"])
        except (ValueError, KeyError, TypeError):
            message = str(error.reason)
        status = 403 if error.status == 403 else 400
        return ApiError(status, f"the API server refused the job: {message}", code="job_refused")
    log.error("creating a job of a batch failed", exc_info=error)
    return ApiError(500, INTERNAL_ERROR)


async def in_pool(items: Sequence[T], work: Callable[[T], Awaitable[None]]) -> None:
    """Runs `work` on every item, CREATE_CONCURRENCY at a time."""
    slots = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(item: T) -> None:
        async with slots:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


def check_count(count: int, gateway: Gateway, namespace: str, param: str) -> None:
    if count > gateway.settings.max_batch_files:
        message = f"a batch has at most {gateway.settings.max_batch_files} files, not {count}"
        raise ApiError(400, message, param=param, code="too_many_files")
    if count == 0:
        raise ApiError(400, "a batch needs at least one file", param=param)
    check_queue(gateway, namespace, count)


def charge(access: Access, principal: Principal, count: int) -> None:
    """Each job of a batch costs what a request does: the batch's own request paid for the first."""
    access.limiter.charge(principal.identity, count - 1, time.monotonic())


def _job(
    gateway: Gateway,
    principal: Principal,
    submission: Submission,
    source: dict[str, Any],
    filename: str,
    *,
    job_id: str,
    batch: tuple[str, int],
    uploaded: bool,
    param: str | None = None,
) -> dict[str, Any]:
    try:
        spec = transcription_job_spec(submission, source, gateway.settings.job_gpus)
    except ApiError as error:
        if param is None:
            raise
        raise ApiError(400, f"{param}: {error.detail}", param=param) from None
    return build_transcription_job(
        principal.namespace,
        job_id,
        spec,
        filename,
        request_id=request_id.get(),
        requested_by=principal.subject,
        uploaded=uploaded,
        batch=batch,
        queue=submission.queue,
    )


async def submit_uploads(
    gateway: Gateway, access: Access, principal: Principal, uploads: Sequence[object], submission: Submission
) -> BatchSubmitted:
    """Creates a job for each uploaded file (each already checked to be audio as it arrived)."""
    if not all(isinstance(upload, StagedFile) for upload in uploads):
        raise ApiError(400, "send each audio file as a multipart/form-data part named file", param="file")
    check_model(submission, gateway.settings)
    check_count(len(uploads), gateway, principal.namespace, "file")
    batch_id = new_batch_id()
    files = []
    for index, upload in enumerate(uploads):
        assert isinstance(upload, StagedFile)
        source = s3_source(gateway.settings.upload_bucket, upload.key)
        job = _job(
            gateway,
            principal,
            submission,
            source,
            upload.filename or "audio",
            job_id=upload.job_id,
            batch=(batch_id, index),
            uploaded=True,
        )
        files.append(BatchFile(index, job, upload=upload))
    charge(access, principal, len(files))
    return await create_jobs(gateway, batch_id, files)


async def submit_sources(
    gateway: Gateway, access: Access, principal: Principal, sources: Sequence[str], submission: Submission
) -> BatchSubmitted:
    """Creates a job for each source, once the API server has taken every one of them in a dry run."""
    check_model(submission, gateway.settings)
    transcription_job_spec(submission, s3_source(gateway.settings.upload_bucket, "audio"), gateway.settings.job_gpus)
    check_count(len(sources), gateway, principal.namespace, "sources")
    batch_id = new_batch_id()
    files = [
        BatchFile(
            index,
            _job(
                gateway,
                principal,
                submission,
                source_spec(source),
                source_filename(source),
                job_id=new_job_id(),
                batch=(batch_id, index),
                uploaded=False,
                param=f"sources[{index}]",
            ),
            source=source,
        )
        for index, source in enumerate(sources)
    ]
    refusals: list[tuple[BatchFile, ApiError]] = []

    async def try_creating(file: BatchFile) -> None:
        try:
            await asyncio.to_thread(gateway.jobs.create, file.job, dry_run=True)
        except Exception as error:
            refusals.append((file, refused(error)))

    await in_pool(files, try_creating)
    if refusals:
        file, error = min(refusals, key=lambda refusal: refusal[0].index)
        raise ApiError(
            error.status_code, f"sources[{file.index}]: {error.detail}", param=f"sources[{file.index}]", code=error.code
        )
    charge(access, principal, len(files))
    return await create_jobs(gateway, batch_id, files)


async def create_jobs(gateway: Gateway, batch_id: str, files: Sequence[BatchFile]) -> BatchSubmitted:
    """Creates the files' jobs, CREATE_CONCURRENCY at a time, completing each upload first; after a failure no more
    are begun. The upload of each file whose job was not created is deleted (or its multipart upload aborted, by
    the request's end). Raises the first error when no job was created."""
    created: list[tuple[BatchFile, dict[str, Any]]] = []
    failed: list[tuple[BatchFile, ApiError]] = []
    first: list[ApiError] = []

    async def create(file: BatchFile) -> None:
        if first:
            message = f"not submitted, since an earlier file's job could not be: {first[0].detail}"
            failed.append((file, ApiError(first[0].status_code, message, code=first[0].code)))
            return
        committed = False
        try:
            if file.upload is not None:
                await asyncio.to_thread(file.upload.upload.commit)
                committed = True
            created.append((file, await asyncio.to_thread(gateway.jobs.create, file.job)))
        except Exception as error:
            first.append(refused(error))
            failed.append((file, first[-1]))
            if committed and file.upload is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(
                        gateway.objects.remove_object, gateway.settings.upload_bucket, file.upload.key
                    )
            return
        if file.upload is not None:
            metrics.uploaded_bytes.inc(file.upload.size or 0)
        metrics.jobs_submitted.inc()

    await in_pool(files, create)
    if not created:
        raise first[0]
    return BatchSubmitted(batch_id, sorted(created, key=lambda c: c[0].index), sorted(failed, key=lambda f: f[0].index))
