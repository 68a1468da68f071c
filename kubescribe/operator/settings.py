"""The operator's configuration, read from KUBESCRIBE_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBESCRIBE_")

    runner_image: str = "kubescribe:latest"
    runner_command: list[str] = ["python", "-m", "kubescribe.runner"]
    s3_endpoint: str = "http://minio.kubescribe:9000"
    """The store jobs read from and write to unless their spec names another."""
    s3_access_key: SecretStr = Field(SecretStr(""), validation_alias="AWS_ACCESS_KEY_ID")
    s3_secret_key: SecretStr = Field(SecretStr(""), validation_alias="AWS_SECRET_ACCESS_KEY")
    """The credentials for `s3_endpoint`, from the standard variables. They stay with the operator: it gives each
    job presigned URLs for the job's own objects, and deletes those objects when the job goes."""
    s3_region: str = "us-east-1"
    """The store's region, which presigned URLs are signed for."""
    default_output_bucket: str = "transcripts"
    default_model: str = "tiny.en"
    max_running_jobs: int = 10
    """Jobs admitted and not finished, cluster-wide."""
    max_gpus_per_namespace: int = 4
    """GPUs of admitted, unfinished jobs per namespace."""
    model_cache_dir: str = "/models"
    """Where the runner container keeps downloaded models."""
    namespaces: list[str] = []
    """The namespaces the operator watches and acts in; empty: every namespace."""
    log_level: str = "INFO"
    resync_seconds: float = 30
    metrics_port: int = 9090
    liveness_port: int = 8080
