"""A submission, in order: the job's spec is checked, then the namespace's queue, then the upload (streamed to S3
while it was received, see upload.py) is checked to be audio and its S3 upload completed; only then is the
TranscriptionJob created. Whatever fails leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import UploadFile
from pydantic import ValidationError

from kubescribe.api.v1alpha1 import WAITING_PHASES, Format, Task, TranscriptionJobSpec, phase_of
from kubescribe.gateway import metrics
from kubescribe.gateway.access.caller import Principal
from kubescribe.gateway.access.ratelimit import retry_after_header
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake.audio import NotAudio, check_audio
from kubescribe.gateway.intake.resource import build_transcription_job
from kubescribe.gateway.intake.upload import StagedFile
from kubescribe.gateway.middleware import request_id
from kubescribe.gateway.settings import GatewaySettings
from kubescribe.gateway.state import Gateway

QUEUE_RETRY_SECONDS = 30


@dataclass(frozen=True)
class Submission:
    """What a caller asks of a transcription, whichever endpoint they asked it of."""

    model: str
    language: str | None = None
    task: Task = "transcribe"
    formats: tuple[str, ...] = ("json", "txt", "srt", "vtt")
    vad: bool = True
    word_timestamps: bool = False
    webhook_url: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    beam_size: int = 5
    hotwords: str | None = None
    diarize: bool = False
    speakers: int | None = None
    """How many speakers there are, when the caller knows: diarization then finds exactly that many."""
    queue: str = ""
    """The Kueue LocalQueue of the caller's namespace that admits the job; empty: the namespace's default."""


_FORMAT = f"({'|'.join(get_args(Format))})"
FORMATS = f"^ *{_FORMAT} *(, *{_FORMAT} *)*$"
"""A comma-separated list of formats, as parse_formats reads it."""


def parse_formats(raw: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [f for f in formats if f not in get_args(Format)]
    if not formats or unknown:
        raise ApiError(400, f"formats must be a comma-separated list of {', '.join(get_args(Format))}", param="formats")
    return formats


def s3_source(bucket: str, key: str) -> dict[str, Any]:
    return {"s3": {"bucket": bucket, "key": key}}


def transcription_job_spec(submission: Submission, source: Mapping[str, Any], gpus: int) -> TranscriptionJobSpec:
    options: dict[str, Any] = {
        "vad": submission.vad,
        "wordTimestamps": submission.word_timestamps,
        "beamSize": submission.beam_size,
        "temperature": submission.temperature,
        "initialPrompt": submission.prompt or None,
        "hotwords": submission.hotwords or None,
    }
    if submission.diarize or submission.speakers is not None:
        options |= {"diarize": True, "minSpeakers": submission.speakers, "maxSpeakers": submission.speakers}
    try:
        return TranscriptionJobSpec.model_validate(
            {
                "source": source,
                "model": submission.model,
                "language": submission.language or None,
                "task": submission.task,
                "outputs": {"formats": list(submission.formats)},
                "options": options,
                "resources": {"gpu": gpus},
                "webhookUrl": submission.webhook_url or None,
            }
        )
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None


def waiting_jobs(jobs: Iterable[Mapping[str, Any]], namespace: str) -> int:
    """Jobs of `namespace` not admitted yet."""
    return sum(
        1 for job in jobs if job["metadata"]["namespace"] == namespace and phase_of(job.get("status")) in WAITING_PHASES
    )


def check_model(submission: Submission, settings: GatewaySettings) -> None:
    if submission.model not in settings.models:
        raise ApiError(
            400,
            f"unknown model {submission.model!r}: this gateway offers {', '.join(settings.models)}",
            param="model",
            code="model_not_found",
        )


def check_queue(gateway: Gateway, namespace: str, adding: int = 1) -> None:
    """429 unless the namespace may have `adding` more jobs waiting."""
    most, waiting = gateway.settings.max_queued_jobs_per_namespace, waiting_jobs(gateway.watcher.jobs(), namespace)
    if waiting + adding > most:
        message = f"namespace {namespace} has {most} jobs waiting already"
        if adding > 1:
            message = f"namespace {namespace} has {waiting} jobs waiting: {adding} more would pass its limit of {most}"
        raise ApiError(
            429,
            message,
            code="too_many_queued_jobs",
            headers={"Retry-After": retry_after_header(QUEUE_RETRY_SECONDS)},
        )


async def submit(gateway: Gateway, principal: Principal, upload: UploadFile, submission: Submission) -> Any:
    """Creates the job and returns it (as the API server answered)."""
    if not isinstance(upload, StagedFile):
        raise ApiError(400, "send the audio as one multipart/form-data part named file", param="file")
    settings, namespace = gateway.settings, principal.namespace
    check_model(submission, settings)
    source = s3_source(settings.upload_bucket, upload.key)
    spec = transcription_job_spec(submission, source, settings.job_gpus)
    check_queue(gateway, namespace)
    size = upload.size or 0
    if size == 0:
        raise ApiError(415, "the file is empty", param="file", code="unsupported_audio")
    if size > settings.max_upload_bytes:
        raise ApiError(413, f"the file is larger than {settings.max_upload_bytes} bytes", param="file")
    try:
        await asyncio.to_thread(check_audio, upload.file)
    except NotAudio as error:
        raise ApiError(415, str(error), param="file", code="unsupported_audio") from None
    await asyncio.to_thread(upload.upload.commit)
    metrics.uploaded_bytes.inc(size)
    job = build_transcription_job(
        namespace,
        upload.job_id,
        spec,
        upload.filename or "audio",
        request_id=request_id.get(),
        requested_by=principal.subject,
        queue=submission.queue,
    )
    try:
        created = await asyncio.to_thread(gateway.jobs.create, job)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(gateway.objects.remove_object, settings.upload_bucket, upload.key)
        raise
    metrics.jobs_submitted.inc()
    return created
