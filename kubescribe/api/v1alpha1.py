"""The TranscriptionJob resource (kubescribe.io/v1alpha1) as pydantic models: the one definition that every
component shares and that the CRD's schema is generated from (`python -m kubescribe.api.crd`).

Python names are snake_case, the resource's are camelCase; both are accepted when parsing. Serialize with
`model_dump(mode="json", by_alias=True, exclude_none=True)` to get the resource's shape.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Any, Final, Literal, Self, get_args
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP: Final = "kubescribe.io"
VERSION: Final = "v1alpha1"
KIND: Final = "TranscriptionJob"
PLURAL: Final = "transcriptionjobs"
API_VERSION: Final = f"{GROUP}/{VERSION}"

WHISPER_MODELS = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large",
    "large-v1",
    "large-v2",
    "large-v3",
    "large-v3-turbo",
    "turbo",
    "distil-small.en",
    "distil-medium.en",
    "distil-large-v2",
    "distil-large-v3",
    "distil-large-v3.5",
)
"""The Whisper model names faster-whisper downloads by name."""

Format = Literal["json", "txt", "srt", "vtt", "tsv"]
Task = Literal["transcribe", "translate"]
Execution = Literal["Auto", "Isolated", "Pooled"]
"""Where a job runs. Isolated: a runner pod of its own, always. Pooled: a RunnerPool's worker only (it waits while no
pool that serves it has room). Auto: a pool that serves its model and namespace and has room, else its own pod."""
Phase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"]
"""Pending: created, not yet admitted. Queued: waiting for its turn, for GPUs or for room in a pool. Running: its
runner Job, or its pool assignment, was made. Succeeded, Failed, Cancelled: finished, for good."""
PHASES: Final[tuple[Phase, ...]] = get_args(Phase)
FINISHED_PHASES: Final[frozenset[Phase]] = frozenset({"Succeeded", "Failed", "Cancelled"})
WAITING_PHASES: Final[frozenset[Phase]] = frozenset({"Pending", "Queued"})

ONE_SOURCE = "exactly one of source.s3 and source.url must be set"
TRANSLATE_NEEDS_MULTILINGUAL = "translate needs a multilingual model; *.en models only transcribe English"
OWN_STORE_NEEDS_BOTH = (
    "source.s3.endpoint and source.s3.secretName go together: both name your own store; omit both for the operator's"
)
TOLERATION_WITHOUT_KEY = "a toleration without a key must have operator Exists"
EXISTS_TAKES_NO_VALUE = "a toleration with operator Exists takes no value"
SECONDS_NEED_NO_EXECUTE = "tolerationSeconds needs effect NoExecute"
SPEC_IMMUTABLE = "spec is immutable; delete and re-create the job"
SPEAKER_BOUNDS_IN_ORDER = "options.minSpeakers must not exceed options.maxSpeakers"
SPEAKER_BOUNDS_NEED_DIARIZE = "options.minSpeakers and options.maxSpeakers need options.diarize: true"
MAX_SPEAKERS = 20

# Pydantic (Rust regex) and the API server (Go RE2) both search for a pattern: anchor it, and keep to shared syntax.
BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
HTTP_URL = r"^https?://[!-~]+$"
"""Printable ASCII only: a URL with any other character is percent-encoded."""
URL_MAX_LENGTH = 2048
LANGUAGE = r"^[a-z]{2,3}$"
PROMPT_MAX_LENGTH = 2000
BEAM_SIZE_MAX = 20
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
"""For an S3 key the operator deletes: an S3 request's XML cannot carry control characters."""
LOCAL_QUEUE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
"""A Kueue LocalQueue's name, a DNS label: also what the label below may hold."""
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""On a TranscriptionJob: the Kueue LocalQueue of its namespace that admits it (when Kueue is on)."""
MAX_SECONDS = 2**31 - 1
"""A duration's bound, as Kubernetes bounds a Job's ttlSecondsAfterFinished: about 68 years."""
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$"
"""A label key as Kubernetes has it: an optional DNS-subdomain prefix and a slash, then a name."""
_LABEL_KEY_MAX_LENGTH = 253 + 1 + 63
_LABEL_VALUE = rf"^({_LABEL_NAME})?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"
MODEL_PATTERN = (
    r"^(?:"
    + "|".join(name.replace(".", r"\.") for name in WHISPER_MODELS)
    + r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[!-~]*)?"
    + r"|[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*"
    + r")$"
)


class StrictModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def defaulted(model: type[StrictModel], description: str) -> Any:
    """A nested object that is filled with its own defaults when omitted, by pydantic and (as `{}`) by the CRD."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


class S3Object(StrictModel):
    """An object in S3-compatible storage."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.endpoint) == has(self.secretName)", "message": OWN_STORE_NEEDS_BOTH}
            ]
        }
    )

    bucket: str = Field(pattern=BUCKET, description="Bucket name (3-63 lowercase letters, digits, dots, hyphens).")
    key: str = Field(min_length=1, max_length=1024, description="Object key, for example speeches/jfk.flac.")
    endpoint: str | None = Field(
        None,
        pattern=HTTP_URL,
        max_length=URL_MAX_LENGTH,
        description="S3 endpoint URL, for example http://minio.storage:9000. Omit to use the operator's store.",
    )
    secret_name: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN,
        max_length=253,
        description="Secret in the job's namespace with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "for this endpoint. Omit, with the endpoint, to use the operator's store.",
    )

    @model_validator(mode="after")
    def _own_store_needs_both(self) -> Self:
        if (self.endpoint is None) != (self.secret_name is None):
            raise ValueError(OWN_STORE_NEEDS_BOTH)
        return self


class Source(StrictModel):
    """Where the audio comes from: exactly one of s3 and url."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "has(self.s3) != has(self.url)", "message": ONE_SOURCE}]
        }
    )

    s3: S3Object | None = Field(None, description="An audio object in S3-compatible storage.")
    url: str | None = Field(
        None, pattern=HTTP_URL, max_length=URL_MAX_LENGTH, description="An http or https URL the runner downloads."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.s3 is None) == (self.url is None):
            raise ValueError(ONE_SOURCE)
        return self

    @property
    def stem(self) -> str:
        """The audio's file name without its extension, less control and format characters (an S3 request's XML
        cannot carry some); the transcripts are named after it."""
        path = self.s3.key if self.s3 else unquote(_url_path(self.url or ""))
        stem = "".join(char for char in PurePosixPath(path).stem if unicodedata.category(char)[0] != "C")
        return stem.strip() or "audio"


def _url_path(url: str) -> str:
    """The path of an http(s) URL, as urlsplit finds it, for every URL the pattern takes: urlsplit refuses some (a
    host with an unbalanced [ or ])."""
    location = re.split(r"[?#]", url.partition("://")[2], maxsplit=1)[0]
    slash = location.find("/")
    return location[slash:] if slash >= 0 else ""


def model_location(model: str) -> tuple[str, str] | None:
    """The bucket and key prefix of an s3:// model (the prefix ends with / unless empty); None for other models."""
    if not model.startswith("s3://"):
        return None
    bucket, _, prefix = model.removeprefix("s3://").partition("/")
    return bucket, prefix.rstrip("/") + "/" if prefix.strip("/") else ""


def same_model(first: str, second: str) -> bool:
    """Whether two model names name one model: the same name, or s3:// URIs of the same directory (with or
    without the closing /)."""
    return first == second or (model_location(first) or first) == (model_location(second) or second)


def transcript_key(prefix: str, source: Source, format_: str) -> str:
    """The object key of one transcript of `source`, under the output prefix."""
    return f"{prefix}{source.stem}.{format_}"


class OutputLocation(StrictModel):
    """Where the transcripts are written."""

    bucket: str = Field(pattern=BUCKET, description="Bucket the transcripts are written to.")
    prefix: str = Field(
        "",
        pattern=NO_CONTROL_CHARACTERS,
        max_length=1024,
        description="Key prefix of the transcripts, for example jfk/; empty for the bucket root.",
    )


class Outputs(StrictModel):
    """Which transcript files to write, and where."""

    formats: list[Format] = Field(
        ["json", "txt", "srt", "vtt"],
        min_length=1,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Transcript formats: json (segments and words), txt, srt and vtt (subtitles), tsv.",
    )
    s3: OutputLocation | None = Field(None, description="Where to write them. Omit for the operator's default store.")

    @field_validator("formats")
    @classmethod
    def _unique(cls, formats: list[Format]) -> list[Format]:
        if len(set(formats)) != len(formats):
            raise ValueError("formats must not repeat")
        return formats


class Options(StrictModel):
    """Decoding options passed to faster-whisper, and speaker diarization."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.minSpeakers) || !has(self.maxSpeakers) || self.minSpeakers <= self.maxSpeakers",
                    "message": SPEAKER_BOUNDS_IN_ORDER,
                },
                {
                    "rule": "(!has(self.minSpeakers) && !has(self.maxSpeakers)) || (has(self.diarize) && self.diarize)",
                    "message": SPEAKER_BOUNDS_NEED_DIARIZE,
                },
            ]
        }
    )

    vad: bool = Field(True, description="Skip silence with voice activity detection before decoding.")
    word_timestamps: bool = Field(False, description="Add the time of every word to the json output.")
    beam_size: int = Field(5, ge=1, le=BEAM_SIZE_MAX, description="Beam search width; 1 is greedy decoding.")
    initial_prompt: str | None = Field(
        None,
        max_length=PROMPT_MAX_LENGTH,
        description="Text the first window is conditioned on: names, spelling, style.",
    )
    hotwords: str | None = Field(
        None,
        max_length=PROMPT_MAX_LENGTH,
        description="Words likely spoken, such as rare names, that every window is conditioned on.",
    )
    temperature: float = Field(0.0, ge=0, le=1, description="Sampling temperature; 0 decodes deterministically.")
    diarize: bool = Field(
        False, description="Label each segment with its speaker (SPEAKER_00, SPEAKER_01, ... in order of appearance)."
    )
    min_speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, description="With diarize: the fewest speakers to find; omit to find how many."
    )
    max_speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, description="With diarize: the most speakers to find; omit to find how many."
    )

    @model_validator(mode="after")
    def _speaker_bounds(self) -> Self:
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise ValueError(SPEAKER_BOUNDS_IN_ORDER)
        if (self.min_speakers is not None or self.max_speakers is not None) and not self.diarize:
            raise ValueError(SPEAKER_BOUNDS_NEED_DIARIZE)
        return self


class Toleration(StrictModel):
    """A pod toleration, as in the core Pod spec, checked as Kubernetes checks a pod's."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
                    "message": TOLERATION_WITHOUT_KEY,
                },
                {
                    "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "message": EXISTS_TAKES_NO_VALUE,
                },
                {
                    "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                    "message": SECONDS_NEED_NO_EXECUTE,
                },
            ]
        }
    )

    key: str | None = Field(
        None,
        pattern=rf"^$|{_LABEL_KEY}",
        max_length=_LABEL_KEY_MAX_LENGTH,
        description="Taint key to match; empty with operator Exists matches every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (the default).")
    value: str | None = Field(
        None, pattern=_LABEL_VALUE, max_length=63, description="Taint value to match with operator Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches every effect."
    )
    toleration_seconds: int | None = Field(
        None,
        ge=-MAX_SECONDS,
        le=MAX_SECONDS,
        description="How long a NoExecute taint is tolerated before eviction; unset tolerates it forever.",
    )

    @model_validator(mode="after")
    def _as_kubernetes_does(self) -> Self:
        if not self.key and self.operator != "Exists":
            raise ValueError(TOLERATION_WITHOUT_KEY)
        if self.operator == "Exists" and self.value:
            raise ValueError(EXISTS_TAKES_NO_VALUE)
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(SECONDS_NEED_NO_EXECUTE)
        return self


class Resources(StrictModel):
    """What the runner pod gets and where it may run."""

    gpu: int = Field(1, ge=0, le=8, description="NVIDIA GPUs (nvidia.com/gpu) for the runner; 0 runs it on CPU.")
    cpu: str | None = Field(
        None, pattern=QUANTITY_PATTERN, description='CPU request as a quoted quantity, for example "2" or "500m".'
    )
    memory: str | None = Field(
        None, pattern=QUANTITY_PATTERN, description="Memory request as a quantity, for example 4Gi."
    )
    node_selector: dict[str, Annotated[str, Field(pattern=_LABEL_VALUE, max_length=63)]] = Field(
        default_factory=dict, max_length=32, description="Node labels the runner pod requires."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Tolerations of the runner pod."
    )
    priority_class_name: str | None = Field(
        None, pattern=DNS_SUBDOMAIN, max_length=253, description="PriorityClass of the runner pod."
    )

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        # Checked by pydantic alone: the operator fails a job with such a key (InvalidSpec) before anything runs.
        for key in selector:
            if len(key) > _LABEL_KEY_MAX_LENGTH or not re.match(_LABEL_KEY, key):
                raise ValueError(f"nodeSelector key {key!r} is not a label key such as example.com/gpu-pool")
        return selector


class TranscriptionJobSpec(StrictModel):
    """What to transcribe, how, and where the transcripts go. Immutable once created."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": SPEC_IMMUTABLE},
                {
                    "rule": "self.task != 'translate' || !self.model.endsWith('.en')",
                    "message": TRANSLATE_NEEDS_MULTILINGUAL,
                },
            ]
        }
    )

    source: Source = Field(description="The audio to transcribe: exactly one of s3 and url.")
    model: str = Field(
        "tiny.en",
        pattern=MODEL_PATTERN,
        max_length=256,
        description="A Whisper model name (tiny, tiny.en, base, small, medium, large-v3, turbo, distil-large-v3, "
        "...), s3://bucket/prefix/ of a CTranslate2 model, or a Hugging Face repository such as org/name.",
    )
    language: str | None = Field(
        None, pattern=LANGUAGE, description="Spoken language as an ISO 639-1 code such as en; omit to detect it."
    )
    task: Task = Field(
        "transcribe", description="transcribe keeps the spoken language; translate writes English instead."
    )
    outputs: Outputs = defaulted(Outputs, "Transcript formats and where they are written.")
    options: Options = defaulted(Options, "Decoding options.")
    resources: Resources = defaulted(Resources, "Resources and placement of the runner pod.")
    priority: int = Field(0, ge=-1000, le=1000, description="Admission priority: higher runs first when queued.")
    execution: Execution = Field(
        "Auto",
        description="Where the job runs: Isolated (a runner pod of its own), Pooled (a RunnerPool's warm worker "
        "only) or Auto (a pool that serves its model and namespace and has room, else a pod of its own).",
    )
    backoff_limit: int = Field(2, ge=0, le=10, description="Retries of a failed runner pod before the job fails.")
    active_deadline_seconds: int = Field(
        3600,
        ge=1,
        le=MAX_SECONDS,
        description="Seconds the job may run once admitted, retries included, before it fails.",
    )
    ttl_seconds_after_finished: int = Field(
        7200,
        ge=0,
        le=MAX_SECONDS,
        description="Seconds after finishing before the job and its transcripts are deleted.",
    )
    webhook_url: str | None = Field(
        None,
        pattern=HTTP_URL,
        max_length=URL_MAX_LENGTH,
        description="An http or https URL that gets a POST with the job's status when it finishes.",
    )

    @model_validator(mode="after")
    def _translate_needs_multilingual(self) -> Self:
        if self.task == "translate" and self.model.endswith(".en"):
            raise ValueError(TRANSLATE_NEEDS_MULTILINGUAL)
        return self


def output_location(spec: TranscriptionJobSpec, namespace: str, name: str, default_bucket: str) -> OutputLocation:
    """Where the job's transcripts go: its spec's outputs.s3, else `<default bucket>/<namespace>/<name>/`."""
    return spec.outputs.s3 or OutputLocation(bucket=default_bucket, prefix=f"{namespace}/{name}/")


def transcript_uris(spec: TranscriptionJobSpec, namespace: str, name: str, default_bucket: str) -> dict[str, str]:
    """The s3:// URI of each of the job's transcripts, by format: the only objects its result may name."""
    location = output_location(spec, namespace, name, default_bucket)
    return {
        format_: f"s3://{location.bucket}/{transcript_key(location.prefix, spec.source, format_)}"
        for format_ in spec.outputs.formats
    }


class Condition(StrictModel):
    """An observation of the job's state, in the Kubernetes convention (metav1.Condition)."""

    type: str = Field(max_length=316, description="Condition type in CamelCase, for example Admitted or Complete.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field(max_length=32768, description="Human-readable details of the last transition.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )


class Progress(StrictModel):
    """How far the runner is, reported while it runs."""

    percent: float | None = Field(None, ge=0, le=100, description="Share of the audio transcribed, 0 to 100.")
    processed_seconds: float | None = Field(None, ge=0, description="Seconds of audio transcribed so far.")
    duration_seconds: float | None = Field(None, ge=0, description="Length of the audio in seconds.")
    eta_seconds: float | None = Field(None, ge=0, description="Estimated seconds until the transcription is done.")

    @model_validator(mode="after")
    def _processed_within_duration(self) -> Self:
        processed, duration = self.processed_seconds, self.duration_seconds
        if processed is not None and duration is not None and processed > duration:
            raise ValueError("processedSeconds must not exceed durationSeconds")
        return self


class Result(StrictModel):
    """What a successful transcription produced."""

    language: str | None = Field(None, description="Language transcribed, given or detected.")
    language_probability: float | None = Field(
        None, ge=0, le=1, description="Confidence of the detected language, 0 to 1."
    )
    duration_seconds: float | None = Field(None, ge=0, description="Length of the audio in seconds.")
    outputs: dict[str, str] = Field(
        default_factory=dict, description="URI of each transcript (s3://bucket/key), keyed by format."
    )
    real_time_factor: float | None = Field(
        None, ge=0, description="Transcription time divided by audio duration; below 1 is faster than real time."
    )
    speakers: int | None = Field(None, ge=0, description="Speakers found, when the job asked for diarization.")


class WebhookDelivery(StrictModel):
    """How the completion webhook went."""

    delivered: bool = Field(description="The webhook answered 2xx.")
    attempts: int = Field(ge=0, description="POSTs made so far.")
    last_error: str | None = Field(None, description="Why the last attempt failed.")
    refused: bool = Field(False, description="The URL leads where jobs may not connect; it is not tried again.")
    delivered_at: datetime | None = Field(None, description="When the webhook answered 2xx.")


class TranscriptionJobStatus(StrictModel):
    """The observed state of the job, written by the operator and the runner."""

    phase: Phase | None = Field(None, description="Pending, Queued, Running, Succeeded, Failed or Cancelled.")
    queue_position: int | None = Field(
        None,
        ge=1,
        description="Place in the admission queue while Queued; 1 is next. Exact up to 10, within a tenth beyond.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Latest observations of the job's state, one per type.",
    )
    progress: Progress | None = Field(None, description="Progress of the running transcription.")
    result: Result | None = Field(None, description="Outcome of a successful transcription.")
    start_time: datetime | None = Field(None, description="When the first runner pod started.")
    completion_time: datetime | None = Field(None, description="When the job succeeded, failed or was cancelled.")
    attempts: int | None = Field(None, ge=0, description="Runner pods started so far.")
    reason: str | None = Field(None, description="CamelCase reason for the current phase.")
    message: str | None = Field(None, description="Human-readable details of the current phase.")
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation the status reflects.")
    job_name: str | None = Field(None, description="Name of the batch/v1 Job that runs the runner pod.")
    pool: str | None = Field(None, description="The RunnerPool whose worker runs the job; none for a pod of its own.")
    assignment: str | None = Field(None, description="The RunnerAssignment of the job's current attempt in its pool.")
    webhook: WebhookDelivery | None = Field(None, description="Delivery of the completion webhook, when one is set.")


class TranscriptionJob(StrictModel):
    """A speech transcription: audio in, transcripts out."""

    api_version: Literal["kubescribe.io/v1alpha1"] = Field(
        "kubescribe.io/v1alpha1", description="kubescribe.io/v1alpha1."
    )
    kind: Literal["TranscriptionJob"] = Field(KIND, description="TranscriptionJob.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: TranscriptionJobSpec = Field(description="What to transcribe, how, and where the transcripts go.")
    status: TranscriptionJobStatus | None = Field(None, description="The observed state of the job.")


def phase_of(status: Mapping[str, Any] | None) -> Phase:
    """The phase a TranscriptionJob's status records; a job without one is Pending."""
    phase = (status or {}).get("phase")
    return phase if phase in PHASES else "Pending"


def is_finished(status: Mapping[str, Any] | None) -> bool:
    """Whether the job is in a phase it never leaves."""
    return phase_of(status) in FINISHED_PHASES
