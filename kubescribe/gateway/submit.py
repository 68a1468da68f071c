"""A submission: the job's spec checked first, then the upload checked to be audio and its S3 upload (streamed while
the file was received, see uploads.py) completed, and only then the TranscriptionJob created. Whatever fails leaves
nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import UploadFile
from pydantic import ValidationError

from kubescribe.api.v1alpha1 import Format, Task, TranscriptionJobSpec
from kubescribe.gateway import metrics
from kubescribe.gateway.auth import Principal
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.jobs import build_job, new_job_id, sanitize_filename, upload_key
from kubescribe.gateway.ratelimit import retry_after_header, waiting_jobs
from kubescribe.gateway.service import Gateway
from kubescribe.gateway.storage import NotAudio, check_audio, put_upload
from kubescribe.gateway.uploads import StagedFile

QUEUE_RETRY_SECONDS = 30


@dataclass(frozen=True)
class Request:
    model: str
    language: str | None = None
    task: Task = "transcribe"
    formats: tuple[str, ...] = ("json", "txt", "srt", "vtt")
    vad: bool = True
    word_timestamps: bool = False
    webhook_url: str | None = None
    prompt: str | None = None
    temperature: float = 0.0


def parse_formats(raw: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [f for f in formats if f not in get_args(Format)]
    if not formats or unknown:
        raise ApiError(400, f"formats must be a comma-separated list of {', '.join(get_args(Format))}", param="formats")
    return formats


def job_spec(request: Request, bucket: str, key: str, gpus: int) -> TranscriptionJobSpec:
    options: dict[str, Any] = {"vad": request.vad, "wordTimestamps": request.word_timestamps}
    if request.prompt:
        options["initialPrompt"] = request.prompt
    if request.temperature:
        options["temperature"] = request.temperature
    try:
        return TranscriptionJobSpec.model_validate(
            {
                "source": {"s3": {"bucket": bucket, "key": key}},
                "model": request.model,
                "language": request.language or None,
                "task": request.task,
                "outputs": {"formats": list(request.formats)},
                "options": options,
                "resources": {"gpu": gpus},
                "webhookUrl": request.webhook_url or None,
            }
        )
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None


async def submit(gateway: Gateway, principal: Principal, upload: UploadFile, request: Request, request_id: str) -> Any:
    """Creates the job and returns it (as the API server answered)."""
    settings, namespace = gateway.settings, principal.namespace
    staged = upload if isinstance(upload, StagedFile) else None
    job_id = staged.job_id if staged is not None else new_job_id()
    key = upload_key(namespace, job_id)
    if staged is not None and staged.key != key:
        raise ApiError(403, "the upload was not made by this caller")
    spec = job_spec(request, settings.upload_bucket, key, settings.job_gpus)
    if waiting_jobs(gateway.watcher.jobs(), namespace) >= settings.max_queued_jobs_per_namespace:
        raise ApiError(
            429,
            f"namespace {namespace} has {settings.max_queued_jobs_per_namespace} jobs waiting already",
            code="too_many_queued_jobs",
            headers={"Retry-After": retry_after_header(QUEUE_RETRY_SECONDS)},
        )
    size = upload.size if upload.size is not None else 0
    if size == 0:
        raise ApiError(400, "the file is empty", param="file")
    if size > settings.max_upload_bytes:
        raise ApiError(413, f"the file is larger than {settings.max_upload_bytes} bytes", param="file")
    try:
        await asyncio.to_thread(check_audio, upload.file)
    except NotAudio as error:
        raise ApiError(415, str(error), param="file", code="unsupported_audio") from None
    filename = sanitize_filename(upload.filename)
    if staged is not None:
        await asyncio.to_thread(staged.upload.commit)
    else:
        await asyncio.to_thread(
            put_upload, gateway.store, settings.upload_bucket, key, upload.file, size=size, filename=filename
        )
    metrics.uploaded_bytes.inc(size)
    try:
        created = await asyncio.to_thread(gateway.create_job, build_job(namespace, job_id, spec, filename, request_id))
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(gateway.store.remove_object, settings.upload_bucket, key)
        raise
    metrics.jobs_submitted.inc()
    return created
