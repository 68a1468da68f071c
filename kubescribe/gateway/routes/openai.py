"""/v1/audio/transcriptions and /v1/audio/translations, as OpenAI's audio API: submit a job, wait for it, answer
with its transcript; and /v1/models."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from kubescribe.api.v1alpha1 import LANGUAGE, PROMPT_MAX_LENGTH, Task, is_finished, phase_of
from kubescribe.gateway.access.caller import Principal
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake.submission import Submission, submit
from kubescribe.gateway.intake.upload import WaitingUploadRoute
from kubescribe.gateway.routes.deps import CallerDep, GatewayDep
from kubescribe.gateway.routes.openai_views import (
    OPENAI_MODEL,
    SOURCE_FORMAT,
    ResponseFormat,
    render_json,
    resolve_model,
)
from kubescribe.gateway.routes.schemas import CALLER_ERRORS, ModelList, errors, or_empty
from kubescribe.gateway.routes.views import transcript_uri
from kubescribe.gateway.state import Gateway
from kubescribe.gateway.stores.objects import read_text

CALLERS_FAULTS = ("BadAudio", "AudioTooLong", "SourceTooLarge", "SourceNotFound")
"""Failure reasons that are the audio's, answered 400; other failures are 500."""

router = APIRouter(prefix="/v1", tags=["openai"], route_class=WaitingUploadRoute)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/plain": {}}, "description": "The transcript."},
    **errors(*CALLER_ERRORS, 400, 413, 415, 500, 504),
}
AUDIO_RULES = (
    "The file must decode as audio (at least 0.1 s of it), else 415, and fit the gateway's upload limit, else 413: "
    "rules of the file's content that its schema cannot state. Answered once the transcription is done."
)


async def wait_finished(gateway: Gateway, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
    """The job once finished (None if it went first); TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        with gateway.watcher.follow(namespace, name) as changes:
            job = await asyncio.to_thread(gateway.jobs.get, namespace, name)
            while job is not None and not is_finished(job.get("status")):
                job = await changes.get()
            return job


async def transcribe(
    gateway: Gateway,
    principal: Principal,
    *,
    task: Task,
    file: UploadFile,
    model: str,
    language: str | None,
    prompt: str | None,
    response_format: ResponseFormat,
    temperature: float,
    granularities: Sequence[str],
) -> Response:
    settings = gateway.settings
    submission = Submission(
        model=resolve_model(model, task, language, settings.default_model, settings.multilingual_model),
        language=language,
        task=task,
        formats=(SOURCE_FORMAT[response_format],),
        word_timestamps="word" in granularities,
        prompt=prompt,
        temperature=temperature,
    )
    created = await submit(gateway, principal, file, submission)
    name = created["metadata"]["name"]
    try:
        job = await wait_finished(gateway, principal.namespace, name, settings.openai_wait_seconds)
        if job is None or phase_of(job.get("status")) != "Succeeded":
            status = (job or {}).get("status") or {}
            code = 400 if status.get("reason") in CALLERS_FAULTS else 500
            raise ApiError(code, status.get("message") or "the transcription did not finish", code=status.get("reason"))
        uri = transcript_uri(job, SOURCE_FORMAT[response_format], settings.output_bucket)
        if uri is None:
            raise ApiError(500, "the transcription named no transcript of its own")
        transcript = await asyncio.to_thread(read_text, gateway.objects, uri)
    except TimeoutError:
        raise ApiError(504, f"the transcription took longer than {settings.openai_wait_seconds:g} s") from None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(gateway.jobs.delete, principal.namespace, name)
    if response_format in ("json", "verbose_json"):
        return JSONResponse(render_json(transcript, response_format, task, granularities, temperature))
    return PlainTextResponse(transcript)


Model = Annotated[str, Form(description="whisper-1 (the gateway's default model) or a model this gateway offers.")]
Prompt = Annotated[str, Form(max_length=PROMPT_MAX_LENGTH, description="Text to condition the first window on.")]
Format = Annotated[ResponseFormat, Form()]
Temperature = Annotated[float, Form(ge=0, le=1)]
Granularities = Annotated[
    list[Literal["word", "segment"]],
    Form(alias="timestamp_granularities[]", default_factory=list, description="word, segment"),
]
Audio = Annotated[UploadFile, File(description="The audio: any format ffmpeg decodes.")]


@router.post(
    "/audio/transcriptions",
    responses=RESPONSES,
    summary="Transcribe audio (OpenAI-compatible)",
    description=AUDIO_RULES,
)
async def transcriptions(
    *,
    gateway: GatewayDep,
    principal: CallerDep,
    file: Audio,
    model: Model,
    language: Annotated[
        str, Form(pattern=or_empty(LANGUAGE), description="ISO 639-1 code such as en; detected when empty.")
    ] = "",
    prompt: Prompt = "",
    response_format: Format = "json",
    temperature: Temperature = 0.0,
    timestamp_granularities: Granularities,
) -> Response:
    return await transcribe(
        gateway,
        principal,
        task="transcribe",
        file=file,
        model=model,
        language=language,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        granularities=timestamp_granularities,
    )


@router.post(
    "/audio/translations",
    responses=RESPONSES,
    summary="Translate audio to English (OpenAI-compatible)",
    description=AUDIO_RULES,
)
async def translations(
    *,
    gateway: GatewayDep,
    principal: CallerDep,
    file: Audio,
    model: Model,
    prompt: Prompt = "",
    response_format: Format = "json",
    temperature: Temperature = 0.0,
) -> Response:
    return await transcribe(
        gateway,
        principal,
        task="translate",
        file=file,
        model=model,
        language=None,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        granularities=[],
    )


@router.get("/models", response_model=ModelList, responses=errors(*CALLER_ERRORS), summary="Models offered")
async def models(gateway: GatewayDep, principal: CallerDep) -> dict[str, Any]:
    names = dict.fromkeys([OPENAI_MODEL, *gateway.settings.models])
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "kubescribe"} for name in names]}
