"""The shapes of the API's answers, for validation and the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.config import JsonDict

from kubescribe.api.v1alpha1 import (
    BEAM_SIZE_MAX,
    HTTP_URL,
    LANGUAGE,
    LOCAL_QUEUE,
    MAX_SPEAKERS,
    PROMPT_MAX_LENGTH,
    URL_MAX_LENGTH,
    Phase,
    Task,
)
from kubescribe.gateway.intake.batch import SOURCE
from kubescribe.gateway.intake.submission import FORMATS, Submission, parse_formats

PROMPT = "Text the first window is conditioned on, such as names in the spelling wanted; none when empty."
HOTWORDS = "Words likely spoken, such as rare names, that every window is conditioned on; none when empty."
BEAM_SIZE = "Beam search width; 1 is greedy decoding, faster and a little less accurate."
TEMPERATURE = "Sampling temperature, 0 to 1; 0 decodes deterministically."
DIARIZE = "Label each segment with its speaker (SPEAKER_00, SPEAKER_01, ...); how many speak is found."
SPEAKERS = "How many people speak, when known: labels exactly that many speakers (implies diarize); 0: not known."
QUEUE = "The Kueue LocalQueue of your namespace to admit the job, where the cluster runs Kueue; empty: its default."


def whole_number(value: Any) -> Any:
    """A float without a fraction as the integer it is: JSON Schema's integer takes 12.0, as a strict model does not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def or_empty(pattern: str) -> str:
    """`pattern` (anchored) or the empty string: an empty form field is taken as omitted."""
    return f"^$|{pattern}"


JOB_EXAMPLE: JsonDict = {
    "id": "tj-4k2m9x0q7a1b",
    "namespace": "team-a",
    "phase": "Running",
    "finished": False,
    "created": "2025-01-01T12:00:00Z",
    "filename": "interview.mp3",
    "model": "tiny.en",
    "language": "en",
    "task": "transcribe",
    "formats": ["json", "srt"],
    "progress": {"percent": 42.0, "processedSeconds": 25.2, "durationSeconds": 60.0, "etaSeconds": 8.1},
    "result": None,
    "error": None,
    "status_url": "/v1/jobs/tj-4k2m9x0q7a1b",
}


class ProgressView(BaseModel):
    percent: float | None = None
    processedSeconds: float | None = None
    durationSeconds: float | None = None
    etaSeconds: float | None = None


class ErrorView(BaseModel):
    reason: str
    message: str


class JobView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    id: str
    namespace: str
    phase: Phase
    finished: bool = Field(description="Whether the phase is one the job never leaves: Succeeded, Failed, Cancelled.")
    created: str | None
    filename: str | None
    model: str | None
    language: str | None
    task: str
    formats: list[str]
    progress: ProgressView | None
    result: dict[str, Any] | None = Field(description="The TranscriptionJob's status.result once it succeeded.")
    error: ErrorView | None
    status_url: str


class JobList(BaseModel):
    jobs: list[JobView]
    next_page_token: str | None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"message": "invalid API key", "type": "authentication_error"}}]}
    )

    error: ErrorDetail


class JobOptions(BaseModel):
    """The options of a job: the form fields of POST /v1/jobs besides its file, which every job of a batch shares."""

    model: str = Field("", description="A model this gateway offers; its default when empty.")
    language: str = Field("", pattern=or_empty(LANGUAGE), description="ISO 639-1 code such as en; detected when empty.")
    task: Task = Field("transcribe", description="translate needs a multilingual model (not *.en).")
    formats: str = Field("json,txt,srt,vtt", pattern=FORMATS, description="Comma-separated: json, txt, srt, vtt, tsv.")
    vad: bool = Field(True, description="Skip silence with voice activity detection.")
    word_timestamps: bool = Field(False, description="Add each word's time to the json output.")
    prompt: str = Field("", max_length=PROMPT_MAX_LENGTH, description=PROMPT)
    hotwords: str = Field("", max_length=PROMPT_MAX_LENGTH, description=HOTWORDS)
    beam_size: Annotated[int, BeforeValidator(whole_number)] = Field(5, ge=1, le=BEAM_SIZE_MAX, description=BEAM_SIZE)
    temperature: float = Field(0.0, ge=0, le=1, description=TEMPERATURE)
    diarize: bool = Field(False, description=DIARIZE)
    speakers: Annotated[int, BeforeValidator(whole_number)] = Field(0, ge=0, le=MAX_SPEAKERS, description=SPEAKERS)
    queue: str = Field("", pattern=or_empty(LOCAL_QUEUE), description=QUEUE)
    webhook_url: str = Field(
        "",
        pattern=or_empty(HTTP_URL),
        max_length=URL_MAX_LENGTH,
        description="An http(s) URL POSTed each job's status at its end; none when empty.",
    )

    def submission(self, default_model: str) -> Submission:
        return Submission(
            model=self.model or default_model,
            language=self.language,
            task=self.task,
            formats=parse_formats(self.formats),
            vad=self.vad,
            word_timestamps=self.word_timestamps,
            webhook_url=self.webhook_url,
            prompt=self.prompt,
            hotwords=self.hotwords,
            beam_size=self.beam_size,
            temperature=self.temperature,
            diarize=self.diarize,
            speakers=self.speakers or None,
            queue=self.queue,
        )


class BatchSources(JobOptions):
    """A batch of sources the caller's jobs may read, and their options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"sources": ["s3://audio/team-a/talks/monday.mp3"], "model": "tiny.en"}]},
    )

    sources: list[Annotated[str, Field(pattern=SOURCE, max_length=URL_MAX_LENGTH)]] = Field(
        min_length=1,
        description="s3://<bucket>/<key> of the gateway's store, or http(s) URLs: one job each, held to what a job's "
        "source is (the namespace's storage policy).",
    )


class BatchJob(BaseModel):
    index: int = Field(description="The file's place in the request, from 0.")
    id: str
    filename: str
    status_url: str


class BatchFailure(BaseModel):
    index: int
    filename: str
    source: str | None
    error: ErrorDetail


class BatchCreated(BaseModel):
    id: str
    namespace: str
    jobs: list[BatchJob] = Field(description="The files that are jobs now.")
    not_created: list[BatchFailure] = Field(
        description="The files whose jobs could not be created (the API server failed midway), each with its error; "
        "their uploads are deleted. Submit them again."
    )
    status_url: str


class BatchProgress(BaseModel):
    percent: float
    by: str = Field(description="duration: weighted by each job's audio duration, once all are known; else jobs.")


class BatchFileView(BaseModel):
    index: int | None
    id: str
    filename: str | None
    phase: Phase
    finished: bool
    percent: float | None
    reason: str | None = Field(description="Why the job failed or was cancelled.")
    message: str | None
    transcripts: dict[str, str] = Field(description="Each transcript's download URL, by format, once succeeded.")
    status_url: str


class BatchView(BaseModel):
    id: str
    namespace: str
    total: int
    finished: bool = Field(description="Whether every job of the batch is finished.")
    counts: dict[str, int] = Field(description="Jobs by phase.")
    progress: BatchProgress
    files: list[BatchFileView]
    status_url: str


class BatchCancelled(BaseModel):
    id: str
    cancelled: list[str] = Field(description="The jobs that had not finished: cancelled and deleted.")
    kept: list[str] = Field(description="The jobs already finished, left as they are.")


class ModelView(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "kubescribe"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelView]


class Readiness(BaseModel):
    status: str
    checks: dict[str, bool] = Field(
        description="Whether each thing the gateway needs is up or fresh: kubernetes, s3, watch, keys."
    )


class NotReady(ErrorBody):
    """The error, naming what is down, and the checks."""

    status: str
    checks: dict[str, bool]


ERRORS: dict[int, str] = {
    400: "The request is malformed: a parameter outside its schema, a form that cannot be parsed, or a batch of more "
    "files than the gateway takes.",
    401: "No credential, or one the gateway does not know.",
    403: "The credential may not do this in its namespace, or the API server refuses a job of the batch (its source "
    "is outside the namespace's storage policy).",
    404: "No such job or batch in the caller's namespace, or no such transcript of the job.",
    409: "The job is not finished: it has no transcript yet.",
    413: "The body, or a file of a batch, is larger than the gateway's upload limit.",
    415: "The body is not multipart/form-data (or, for a batch, application/json), or a file does not decode as audio.",
    429: "Over a limit: the caller's request rate or open requests, failed credentials from its address, or its "
    "namespace's waiting jobs (each file of a batch counts as one). Retry-After says when to try again.",
    500: "The transcription failed for a reason other than its audio.",
    503: "Kubernetes or the object store cannot be reached. Retry-After says when to try again.",
    504: "The transcription took longer than the gateway waits for it.",
}
"""Each status code an error may have, and what it means; every error's body is an ErrorBody."""
CALLER_ERRORS = (401, 403, 429, 503)
"""What any request that names a caller may be answered before the route runs."""


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in sorted(codes)}
