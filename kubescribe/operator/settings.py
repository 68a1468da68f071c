"""The operator's configuration, read from KUBESCRIBE_* environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubescribe.api.v1alpha1 import QUANTITY_PATTERN, WHISPER_MODELS, Toleration
from kubescribe.contract import RunnerLimits
from kubescribe.operator.policy import StoragePolicy

Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN)]


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBESCRIBE_")

    runner_image: str = "kubescribe:latest"
    runner_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    runner_image_pull_secrets: list[str] = []
    """Secrets in each job's namespace that the runner's image is pulled with."""
    runner_node_selector: dict[str, str] = {}
    """Node labels every runner pod with GPUs requires, besides its job's own."""
    runner_tolerations: list[Toleration] = []
    """Tolerations of every runner pod with GPUs, besides its job's own (JSON)."""
    runner_runtime_class_name: str = ""
    """The RuntimeClass of runner pods with GPUs (such as the NVIDIA container runtime's)."""
    runner_priority_class_name: str = ""
    """The PriorityClass of runner pods whose jobs name none."""
    runner_extra_resources: dict[str, Quantity] = {}
    """Extended resources (such as RDMA devices) that each runner pod with GPUs gets, as limits."""
    runner_resource_requests: dict[str, Quantity] = {}
    """What every runner container requests besides memory; a job's resources.cpu wins over the CPU."""
    runner_resource_limits: dict[str, Quantity] = {}
    """The runner container's limits besides memory and GPUs, raised to what it requests where that is more."""
    runner_command: list[str] = ["python", "-m", "kubescribe.runner"]
    worker_command: list[str] = ["python", "-m", "kubescribe.runner.worker"]
    """The command of a RunnerPool's workers, in the runner's image."""
    worker_port: int = 8080
    """Where a worker serves its readiness and liveness endpoints."""
    worker_drain_seconds: int = Field(3600, ge=0)
    """How long a worker that is stopped (a rollout, a scale-down) has to finish the jobs it holds."""
    worker_service_account: str = "kubescribe-worker"
    """The ServiceAccount of pool workers, in the operator's namespace."""
    operator_namespace: str = "kubescribe"
    """The operator's own namespace: where RunnerPools, their workers and their assignments are."""
    s3_endpoint: str = "http://minio.kubescribe:9000"
    """The store jobs read from and write to unless their spec names another."""
    s3_access_key: SecretStr = Field(SecretStr(""), validation_alias="AWS_ACCESS_KEY_ID")
    s3_secret_key: SecretStr = Field(SecretStr(""), validation_alias="AWS_SECRET_ACCESS_KEY")
    """The credentials for `s3_endpoint`, from the standard variables. They stay with the operator: it gives each
    job presigned URLs for the job's own objects, and deletes those objects when the job goes."""
    s3_region: str = "us-east-1"
    """The store's region, which presigned URLs are signed for."""
    grant_grace_seconds: float = 600
    """How long a job's presigned URLs stay valid beyond its deadline (activeDeadlineSeconds)."""
    egress_allowed_private_ranges: list[IPvAnyNetwork] = []
    """Private ranges (CIDRs, as JSON) that jobs' source URLs and webhooks may reach, such as an on-premises media
    server's; other non-public addresses, the API server and the store stay out of reach."""
    default_output_bucket: str = "transcripts"
    default_model: str = "tiny.en"
    storage: StoragePolicy = StoragePolicy()
    """Where in the store each namespace's jobs may read and write (JSON)."""
    allowed_models: list[str] = list(WHISPER_MODELS)
    """The models jobs may name: Whisper names, hub ids and s3:// prefixes of model directories (JSON)."""
    max_model_bytes: int = 4 << 30
    """The most an s3:// model's files may hold together."""
    runner_max_source_bytes: int = Field(RunnerLimits().max_source_bytes, gt=0)
    """The largest source a runner downloads."""
    runner_max_duration_seconds: float = Field(RunnerLimits().max_duration_seconds, gt=0)
    """The longest audio a runner decodes and transcribes."""
    runner_download_timeout_seconds: float = Field(RunnerLimits().download_timeout_seconds, gt=0)
    """The longest a runner spends downloading its source."""
    runner_memory_limit: str = Field("", pattern=r"^([0-9]+(\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?)?$")
    """The runner container's memory limit as a quantity; empty: derived from the duration cap and the model."""
    runner_memory_request: str = Field("2Gi", pattern=r"^[0-9]+(\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
    """The memory a runner pod requests unless its job names resources.memory: what the scheduler reserves."""
    max_running_jobs: int = 10
    """Jobs admitted and not finished, cluster-wide."""
    max_gpus_per_namespace: int = 4
    """GPUs of admitted, unfinished jobs per namespace."""
    model_cache_dir: str = "/models"
    """Where the runner container keeps downloaded models."""
    node_model_cache: str = ""
    """The URL at which runner pods reach their node's model cache (the chart's modelCache); empty: none."""
    kueue_enabled: bool = False
    """Whether jobs go to Kueue: those labelled with a LocalQueue (kueue.x-k8s.io/queue-name), and those of a
    namespace with a LocalQueue named `default`. Kueue then admits them, not the operator's own queue."""
    namespaces: list[str] = []
    """The namespaces the operator watches and acts in; empty: every namespace."""
    log_level: str = "INFO"
    resync_seconds: float = 30
    request_timeout_seconds: float = 30
    """The longest one call to the API server or the store may take, answer included."""
    stall_seconds: float = 300
    """How long the reconcile loop may go without finishing a pass before the operator's liveness fails."""
    cleanup_timeout_seconds: float = 300
    """How long the finalizer tries to delete a job's objects in the store before it lets the job go without."""
    metrics_port: int = 9090
    liveness_port: int = 8080

    @field_validator("runner_resource_requests", "runner_resource_limits")
    @classmethod
    def _besides_memory(cls, resources: dict[str, str]) -> dict[str, str]:
        # Memory has settings of its own, GPUs come from each job and extended resources from runner_extra_resources.
        unknown = set(resources) - {"cpu", "ephemeral-storage"}
        if unknown:
            raise ValueError(f"only cpu and ephemeral-storage, not {', '.join(sorted(unknown))}")
        return resources
