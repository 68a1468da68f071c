"""The gateway's configuration, read from KUBESCRIBE_GATEWAY_* environment variables (S3 from the AWS_* ones)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBESCRIBE_GATEWAY_")

    host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on every interface
    port: int = 8000
    metrics_port: int = 9090
    """Prometheus' /metrics is served on this port, apart from the public API."""
    log_level: str = "INFO"

    s3_endpoint: str = Field(
        "http://minio.storage:9000", validation_alias=AliasChoices("KUBESCRIBE_GATEWAY_S3_ENDPOINT", "AWS_ENDPOINT_URL")
    )
    s3_access_key: SecretStr = Field(SecretStr(""), validation_alias="AWS_ACCESS_KEY_ID")
    s3_secret_key: SecretStr = Field(SecretStr(""), validation_alias="AWS_SECRET_ACCESS_KEY")
    upload_bucket: str = "audio"
    """Uploads go to `<namespace>/uploads/<job id>/audio` in this bucket; the operator deletes them with the job."""
    max_upload_bytes: int = 1 << 30
    output_bucket: str = "transcripts"
    """The operator's default output bucket: transcripts are served only from a job's own place in it."""

    keys_secret_name: str = "kubescribe-api-keys"  # noqa: S105 - a name
    keys_secret_namespace: str = "kubescribe"  # noqa: S105 - a name
    keys_cache_seconds: float = Field(5, gt=0)
    """The keys Secret is read again this often, in the background: a revoked key stops working after at most this
    long."""
    keys_max_stale_seconds: float = Field(300, gt=0)
    """While the keys Secret cannot be read, the keys last read serve for this long after that read; then requests
    answer 503."""
    watch_max_stale_seconds: float = Field(180, gt=0)
    """/readyz answers 503 once the job watch has had no event, bookmark or list for this long."""
    abandoned_upload_seconds: float = Field(3600, gt=0)
    """Incomplete multipart uploads of the gateway's upload keys older than this (left by a gateway that stopped
    mid-upload) are aborted, at start and then periodically; longer than any upload takes."""
    kubernetes_tokens: bool = True
    """Also accept Kubernetes bearer tokens (TokenReview, then a SubjectAccessReview of the request's verb on
    TranscriptionJobs in the requested namespace)."""

    rate_limit_per_second: float = 10
    rate_limit_burst: int = 40
    """Each API key's token bucket: requests per second, sustained, and the burst it allows."""
    failed_auth_per_second: float = 0.5
    failed_auth_burst: int = 20
    """Each client address's bucket of failed credentials (unknown keys, invalid tokens): per second, sustained, and
    the burst; once it is empty, failures answer 429 and tokens from that address are not reviewed."""
    max_uploads_per_caller: int = Field(4, ge=1)
    max_event_streams_per_caller: int = Field(16, ge=1)
    max_waits_per_caller: int = Field(4, ge=1)
    """Requests each API key or token may have open at once: uploads to /v1/jobs, /v1/jobs/{id}/events streams and
    /v1/audio/* requests (an upload, then a wait for its transcription); more answer 429."""
    max_queued_jobs_per_namespace: int = 50
    """Pending and Queued jobs a namespace may have before submissions answer 429."""
    max_batch_files: int = Field(1000, ge=1)
    """Files (or sources) one batch may have; more answer 400."""

    models: list[str] = ["tiny.en", "base"]
    """The models jobs may name, here and at /v1/audio/*, and that /v1/models offers (with whisper-1)."""
    default_model: str = "tiny.en"
    multilingual_model: str = "base"
    """What `whisper-1` means when the audio is not English or is to be translated."""
    job_gpus: int = Field(1, ge=0, le=8)
    """GPUs of each submitted job's runner; 0 runs on CPU."""
    openai_wait_seconds: float = 600
    """How long /v1/audio/* waits for the transcription before it answers 504."""
