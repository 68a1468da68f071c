"""What the components agree on across process boundaries: how the operator configures a runner pod and how the
runner reports its end, what the gateway marks on the jobs it submits, and what a node gives a container."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field, IPvAnyNetwork

# Environment of the runner container.
ENV_JOB_NAME: Final = "KUBESCRIBE_JOB_NAME"
"""Name of the TranscriptionJob whose status the runner reports into (unset: no reporting)."""
ENV_JOB_NAMESPACE: Final = "KUBESCRIBE_JOB_NAMESPACE"
ENV_SPEC: Final = "KUBESCRIBE_SPEC"
"""The TranscriptionJob's spec as JSON (camelCase), with the operator's defaults filled in."""
ENV_MODEL_CACHE: Final = "KUBESCRIBE_MODEL_CACHE"
"""Directory of downloaded models, shared between runs where the volume allows."""
ENV_NODE_MODEL_CACHE: Final = "KUBESCRIBE_NODE_MODEL_CACHE"
"""The URL of the node's model cache (`kubescribe-model-cache`), which the runner asks first for the files
of an s3:// model, showing each file's presigned URL (unset: the runner reads them from the store)."""
ENV_STORE_GRANTS: Final = "KUBESCRIBE_STORE_GRANTS"
"""`StoreGrants` as JSON, from the job's Secret, when the job uses the operator's store: the runner then holds
presigned URLs for exactly its own objects and no store credentials."""
ENV_EGRESS_RULES: Final = "KUBESCRIBE_EGRESS_RULES"
"""`EgressRules` as JSON: where the source URL may lead (unset: public addresses only)."""
ENV_LIMITS: Final = "KUBESCRIBE_LIMITS"
"""`RunnerLimits` as JSON: the most the runner downloads and decodes for one job (unset: the defaults)."""
ENV_TERMINATION_MESSAGE_PATH: Final = "KUBESCRIBE_TERMINATION_MESSAGE_PATH"
"""Where the runner writes its termination message instead of TERMINATION_MESSAGE_PATH: for a runner run outside a
pod."""
# A job whose spec names its own store credentials (source.s3.secretName) uses the standard variables
# AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead.

# Environment of a runner pool's worker (`python -m kubescribe.runner.worker`), besides ENV_MODEL_CACHE. Each job's
# own variables come in its RunnerAssignment, never from the worker's environment.
ENV_POOL: Final = "KUBESCRIBE_POOL"
"""The RunnerPool whose assignments the worker takes."""
ENV_POOL_NAMESPACE: Final = "KUBESCRIBE_POOL_NAMESPACE"
"""The pool's namespace, the worker pod's own: where its assignments and their Leases are."""
ENV_POOL_MODEL: Final = "KUBESCRIBE_POOL_MODEL"
"""The model the worker loads once and keeps."""
ENV_POOL_CONCURRENCY: Final = "KUBESCRIBE_POOL_CONCURRENCY"
"""How many assignments the worker runs at once (default 1)."""
ENV_WORKER: Final = "KUBESCRIBE_WORKER"
"""The worker's pod name (from the downward API): the holder of the Leases it takes."""
ENV_WORKER_PORT: Final = "KUBESCRIBE_WORKER_PORT"
"""The port of the worker's health endpoints (default 8080)."""
WORKER_READINESS_PATH: Final = "/readyz"
"""200 once the worker's model is loaded and while it takes assignments; 503 before, and while it drains."""
WORKER_LIVENESS_PATH: Final = "/healthz"
"""200 while the worker's loop is alive."""

# Exit codes. Bad input is not worth retrying: the Job's podFailurePolicy fails the job at once on these.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_SOURCE_NOT_FOUND: Final = 3
EXIT_CANCELLED: Final = 143
NOT_RETRIED_EXIT_CODES: Final = (EXIT_BAD_INPUT, EXIT_SOURCE_NOT_FOUND)

TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
"""The runner writes `{"reason": ..., "message": ...}` as JSON here before it exits with an error, and
`{"result": <the status' result>}` when it succeeded: the operator takes the result from there when the runner's
own report to the status did not arrive."""

# Metadata of TranscriptionJobs.
UPLOADED_SOURCE_ANNOTATION: Final = "kubescribe.io/uploaded-source"
CLEANUP_FINALIZER: Final = "kubescribe.io/cleanup"
"""The operator's finalizer, which deletes a job's transcripts and uploaded audio with it. The gateway puts it on the
jobs it uploads audio for as it creates them, so that one deleted before the operator has seen it takes its audio
along too."""
"""On a job whose source the gateway uploaded ("true"): the operator deletes the source when the job goes, if it is
the job's own upload (`uploaded_source_key`); the annotation alone names nothing to delete."""


def uploaded_source_key(namespace: str, name: str) -> str:
    """Where the gateway puts the audio uploaded for job `name` of `namespace`, in its upload bucket: under the
    namespace's own prefix, where its jobs may read."""
    return f"{namespace}/uploads/{name}/audio"


class Grant(BaseModel):
    """One object the runner may touch: a presigned URL, and the s3:// URI of the object it stands for."""

    url: str = Field(repr=False)
    uri: str


class StoreGrants(BaseModel):
    """Everything a runner may do in the operator's store, each URL valid until `expires` (the job's deadline)."""

    expires: str
    source: Grant | None = None
    """GET of the audio, when the source is in the store."""
    outputs: dict[str, Grant] = Field(default_factory=dict)
    """PUT of each transcript, by format."""
    model: dict[str, Grant] = Field(default_factory=dict)
    """GET of each file of an s3:// model, by its path in the model's directory."""
    model_error: str | None = None
    """Why the model's files could not be granted, when they could not."""


class Endpoint(BaseModel):
    """A host and port, and what is there (for messages)."""

    host: str
    port: int
    name: str


class EgressRules(BaseModel):
    """Where the URLs a job names (source.url, webhookUrl) may lead: public addresses and the private ranges
    allowed, never the forbidden endpoints (the Kubernetes API server, the operator's store)."""

    allowed_private_ranges: list[IPvAnyNetwork] = Field(default_factory=list)
    forbidden_endpoints: list[Endpoint] = Field(default_factory=list)


class RunnerLimits(BaseModel):
    """The most one job's source may cost a runner pod: bytes on disk, seconds of audio in memory, and time spent
    downloading. A source beyond them fails the job with EXIT_BAD_INPUT."""

    max_source_bytes: int = Field(2 << 30, gt=0)
    max_duration_seconds: float = Field(4 * 3600, gt=0)
    download_timeout_seconds: float = Field(3600, gt=0)
