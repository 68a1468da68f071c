"""The child objects of a TranscriptionJob, as plain dicts ready for the API server.

Every child has the same deterministic name (`child_name`), the job's labels and a controller owner reference
to the TranscriptionJob, so creating them is idempotent and deleting the job deletes them. `tj` is the
TranscriptionJob as the API server returns it (camelCase dict, metadata with name, namespace and uid)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any, Final

from kubernetes.utils import parse_quantity

from kubescribe import egress
from kubescribe.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    TranscriptionJobSpec,
    output_location,
    transcript_key,
)
from kubescribe.contract import (
    ENV_EGRESS_RULES,
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_LIMITS,
    ENV_MODEL_CACHE,
    ENV_NODE_MODEL_CACHE,
    ENV_SPEC,
    ENV_STORE_GRANTS,
    NOT_RETRIED_EXIT_CODES,
    TERMINATION_MESSAGE_PATH,
    UPLOADED_SOURCE_ANNOTATION,
    EgressRules,
    RunnerLimits,
    StoreGrants,
    uploaded_source_key,
)
from kubescribe.operator.placement import pod_placement, raised_limits
from kubescribe.operator.policy import within
from kubescribe.operator.settings import OperatorSettings

RUNNER_CONTAINER: Final = "runner"
WORK_DIR: Final = "/work"
TMP_DIR: Final = "/tmp"  # noqa: S108 (an emptyDir of the pod's own)
RUNNER_UID: Final = 65532
POD_SECURITY_CONTEXT: Final = {
    "runAsNonRoot": True,
    "runAsUser": RUNNER_UID,
    "runAsGroup": RUNNER_UID,
    "fsGroup": RUNNER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""Pod Security's `restricted` profile, with a fixed non-root user that owns the pod's emptyDirs."""
CONTAINER_SECURITY_CONTEXT: Final = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
JOB_LABEL: Final = "kubescribe.io/job"
GPU_RESOURCE: Final = "nvidia.com/gpu"
CREDENTIAL_KEYS: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
STRANDED_REASON: Final = "StrandedOnLostNode"
"""The reason of the DisruptionTarget condition of a runner pod the operator ended for its lost node."""

MIB: Final = 1 << 20
RUNNER_BASE_MEMORY_BYTES: Final = 2 << 30
"""What the runner holds before any audio: Python, CTranslate2, ONNX Runtime (the VAD) and CUDA's libraries."""
MEMORY_BYTES_PER_AUDIO_SECOND: Final = MIB
"""What a second of audio costs the runner at most: its 16 kHz float32 samples (64 kB), the copies faster-whisper
makes, and the spectrogram it computes of the whole audio when VAD is off (measured with tiny.en on the CPU:
0.89 MiB a second without VAD, 0.18 MiB with it)."""
WHISPER_MODEL_MIB: Final = {
    **dict.fromkeys(("tiny", "tiny.en"), 80),
    **dict.fromkeys(("base", "base.en"), 150),
    **dict.fromkeys(("small", "small.en", "distil-small.en"), 500),
    **dict.fromkeys(("medium", "medium.en", "distil-medium.en"), 1600),
    **dict.fromkeys(("large", "large-v1", "large-v2", "large-v3"), 3200),
    **dict.fromkeys(("large-v3-turbo", "turbo", "distil-large-v2", "distil-large-v3", "distil-large-v3.5"), 1700),
}
"""The size of each Whisper model's weights, rounded up."""
WORK_MARGIN_BYTES: Final = 256 * MIB
"""Room in the work and model cache volumes beyond the source and model caps."""
TMP_SIZE_LIMIT: Final = "1Gi"

_MAX_LENGTH = 63
_HASH_LENGTH = 8


def shortened(text: str, original: str) -> str:
    """`text` cut to fit 63 characters with a hash of `original` appended, so that distinct originals stay distinct."""
    digest = hashlib.sha256(original.encode()).hexdigest()[:_HASH_LENGTH]
    return f"{text[: _MAX_LENGTH - _HASH_LENGTH - 1].rstrip('-.')}-{digest}"


def child_name(tj: Mapping[str, Any]) -> str:
    """`transcribe-<name>`: a DNS label (63 characters at most, no dots), with a hash when the name had to change."""
    name: str = tj["metadata"]["name"]
    readable = f"transcribe-{name}"
    if len(readable) <= _MAX_LENGTH and "." not in readable:
        return readable
    return shortened(readable.replace(".", "-"), name)


def job_label_value(tj: Mapping[str, Any]) -> str:
    """The job's name as a label value (63 characters at most)."""
    name: str = tj["metadata"]["name"]
    return name if len(name) <= _MAX_LENGTH else shortened(name, name)


def pod_selector(tj: Mapping[str, Any]) -> str:
    """Label selector of the job's runner pods (and of all its children)."""
    return f"{JOB_LABEL}={job_label_value(tj)}"


def labels(tj: Mapping[str, Any]) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubescribe",
        "app.kubernetes.io/component": "runner",
        JOB_LABEL: job_label_value(tj),
    }


def owner_reference(tj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = tj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(tj: Mapping[str, Any], extra_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": child_name(tj),
        "namespace": tj["metadata"]["namespace"],
        "labels": {**labels(tj), **(extra_labels or {})},
        "ownerReferences": [owner_reference(tj)],
    }


def build_service_account(tj: Mapping[str, Any]) -> dict[str, Any]:
    """The runner's identity. Its token is mounted only where a pod asks for it: the runner pod does."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(tj),
        "automountServiceAccountToken": False,
    }


def build_role(tj: Mapping[str, Any]) -> dict[str, Any]:
    """The runner may patch its own job's status, and nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(tj),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/status"],
                "resourceNames": [tj["metadata"]["name"]],
                "verbs": ["patch"],
            }
        ],
    }


def build_role_binding(tj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(tj),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": child_name(tj)},
        "subjects": [{"kind": "ServiceAccount", "name": child_name(tj), "namespace": tj["metadata"]["namespace"]}],
    }


def uses_operator_store(tj: Mapping[str, Any]) -> bool:
    """Whether the job's objects are in the operator's store, reached through presigned URLs (a Secret made by
    `build_grants_secret`); when false the runner uses the credentials Secret the spec names (source.s3.secretName)
    in the job's namespace."""
    source = TranscriptionJobSpec.model_validate(tj["spec"]).source.s3
    return source is None or source.secret_name is None


def build_grants_secret(tj: Mapping[str, Any], grants: StoreGrants) -> dict[str, Any]:
    """The job's presigned URLs in the job's namespace, deleted with the job."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(tj),
        "stringData": {ENV_STORE_GRANTS: grants.model_dump_json()},
    }


def runner_spec(tj: Mapping[str, Any], settings: OperatorSettings) -> TranscriptionJobSpec:
    """The spec the runner gets: the operator's defaults filled in for the model and the output location
    (`<default bucket>/<namespace>/<name>/`). A source in the operator's store keeps no endpoint: the runner reaches
    it through its presigned URLs."""
    metadata = tj["metadata"]
    spec = TranscriptionJobSpec.model_validate({"model": settings.default_model, **tj["spec"]})
    output = output_location(spec, metadata["namespace"], metadata["name"], settings.default_output_bucket)
    return spec.model_copy(update={"outputs": spec.outputs.model_copy(update={"s3": output})})


def owned_objects(tj: Mapping[str, Any], settings: OperatorSettings) -> dict[str, list[str]]:
    """The keys, by bucket, the operator deletes with a job: its transcripts, and its source only where the gateway
    uploaded it for this very job (the annotation alone names nothing); only where the storage policy lets the
    job's namespace write. Nothing of a job that names its own store: the operator's store holds none of it."""
    spec = runner_spec(tj, settings)
    metadata, source = tj["metadata"], spec.source.s3
    if source is not None and source.secret_name is not None:
        return {}
    assert spec.outputs.s3 is not None
    bucket, prefix = spec.outputs.s3.bucket, spec.outputs.s3.prefix
    doomed = [(bucket, transcript_key(prefix, spec.source, format_)) for format_ in spec.outputs.formats]
    uploaded = (metadata.get("annotations") or {}).get(UPLOADED_SOURCE_ANNOTATION) == "true"
    if uploaded and source is not None and source.key == uploaded_source_key(metadata["namespace"], metadata["name"]):
        doomed.append((source.bucket, source.key))
    writable = settings.storage.writable(metadata["namespace"])
    owned: dict[str, list[str]] = {}
    for name, key in doomed:
        if within(f"s3://{name}/{key}", writable):
            owned.setdefault(name, []).append(key)
    return owned


def egress_rules(settings: OperatorSettings, api_server: str) -> EgressRules:
    """Where the URLs jobs name may lead: the allowed private ranges, and never the API server at `api_server`
    nor the store, whatever the ranges."""
    return EgressRules(
        allowed_private_ranges=settings.egress_allowed_private_ranges,
        forbidden_endpoints=[
            egress.endpoint(api_server, "the Kubernetes API server"),
            egress.endpoint(settings.s3_endpoint, "the operator's store"),
        ],
    )


def _store_env(tj: Mapping[str, Any], spec: TranscriptionJobSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The runner's access to storage: the job's presigned URLs, or, when the source names a Secret, that Secret's
    credentials with the source's endpoint, for reading and writing alike."""
    source = spec.source.s3
    if source is None or source.secret_name is None:
        return [
            {"name": ENV_STORE_GRANTS, "valueFrom": {"secretKeyRef": {"name": child_name(tj), "key": ENV_STORE_GRANTS}}}
        ]
    return [
        {"name": "AWS_ENDPOINT_URL", "value": source.endpoint or settings.s3_endpoint},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": source.secret_name, "key": key}}}
            for key in CREDENTIAL_KEYS
        ),
    ]


def runner_limits(settings: OperatorSettings) -> RunnerLimits:
    """What the runner downloads and decodes at most for one job."""
    return RunnerLimits(
        max_source_bytes=settings.runner_max_source_bytes,
        max_duration_seconds=settings.runner_max_duration_seconds,
        download_timeout_seconds=settings.runner_download_timeout_seconds,
    )


def model_bytes(model: str, settings: OperatorSettings) -> int:
    """The most the model's weights hold: a Whisper model's known size, else the cap on s3:// models."""
    if model in WHISPER_MODEL_MIB:
        return WHISPER_MODEL_MIB[model] * MIB
    return settings.max_model_bytes


def runner_memory_limit(spec: TranscriptionJobSpec, settings: OperatorSettings) -> str:
    """The runner container's memory limit: the chart's `runner.memoryLimit`, else what the longest audio it takes
    and its model need; never below the memory the job requests."""
    if settings.runner_memory_limit:
        limit = settings.runner_memory_limit
    else:
        needed = (
            RUNNER_BASE_MEMORY_BYTES
            + MEMORY_BYTES_PER_AUDIO_SECOND * settings.runner_max_duration_seconds
            + model_bytes(spec.model or settings.default_model, settings)
        )
        limit = f"{math.ceil(needed / MIB)}Mi"
    requested = runner_memory_request(spec, settings)
    return requested if parse_quantity(requested) > parse_quantity(limit) else limit


def runner_memory_request(spec: TranscriptionJobSpec, settings: OperatorSettings) -> str:
    """What the scheduler reserves for the runner: the job's resources.memory, else the chart's
    `runner.memoryRequest`. Most audio needs far less than the limit, which allows for the longest."""
    return spec.resources.memory or settings.runner_memory_request


def _container_resources(spec: TranscriptionJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The settings' requests and limits with the job's: its memory and CPU requests, its GPUs and, with GPUs, the
    settings' extended resources."""
    resources = spec.resources
    requests: dict[str, str] = {**settings.runner_resource_requests, "memory": runner_memory_request(spec, settings)}
    if resources.cpu:
        requests["cpu"] = resources.cpu
    limits: dict[str, str] = {**settings.runner_resource_limits, "memory": runner_memory_limit(spec, settings)}
    if resources.gpu > 0:
        limits.update(settings.runner_extra_resources)
        limits[GPU_RESOURCE] = str(resources.gpu)
    return {"requests": requests, "limits": raised_limits(limits, requests)}


def _volumes(spec: TranscriptionJobSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The pod's emptyDirs, each bounded: the work directory holds the source, the model cache one model (a
    Whisper model larger than the cap on s3:// models included)."""
    model = max(settings.max_model_bytes, model_bytes(spec.model or settings.default_model, settings))
    size_limits = {
        "work": f"{math.ceil((settings.runner_max_source_bytes + WORK_MARGIN_BYTES) / MIB)}Mi",
        "model-cache": f"{math.ceil((model + WORK_MARGIN_BYTES) / MIB)}Mi",
        "tmp": TMP_SIZE_LIMIT,
    }
    return [{"name": name, "emptyDir": {"sizeLimit": size}} for name, size in size_limits.items()]


def writable_places_env(settings: OperatorSettings) -> list[dict[str, str]]:
    """Points everything the runner and its libraries write (home, temporary files, Hugging Face's cache) into the
    pod's emptyDirs: the root filesystem is read-only."""
    return [
        {"name": "HOME", "value": TMP_DIR},
        {"name": "TMPDIR", "value": TMP_DIR},
        {"name": "HF_HOME", "value": f"{settings.model_cache_dir}/huggingface"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]


def node_model_cache_env(settings: OperatorSettings) -> list[dict[str, str]]:
    """Where the runner finds its node's model cache, when the cluster runs one."""
    return [{"name": ENV_NODE_MODEL_CACHE, "value": settings.node_model_cache}] if settings.node_model_cache else []


def job_variables(
    tj: Mapping[str, Any], spec: TranscriptionJobSpec, settings: OperatorSettings, rules: EgressRules
) -> dict[str, str]:
    """The runner's variables that describe its job, the same in a runner pod and in a pool's assignment: the
    resolved spec, the job's name and namespace, the egress rules and the limits."""
    metadata = tj["metadata"]
    return {
        ENV_SPEC: spec.model_dump_json(by_alias=True, exclude_none=True),
        ENV_JOB_NAME: metadata["name"],
        ENV_JOB_NAMESPACE: metadata["namespace"],
        ENV_EGRESS_RULES: rules.model_dump_json(),
        ENV_LIMITS: runner_limits(settings).model_dump_json(),
    }


def _pod_spec(
    tj: Mapping[str, Any], spec: TranscriptionJobSpec, settings: OperatorSettings, rules: EgressRules
) -> dict[str, Any]:
    container = {
        "name": RUNNER_CONTAINER,
        "image": settings.runner_image,
        **({"imagePullPolicy": settings.runner_image_pull_policy} if settings.runner_image_pull_policy else {}),
        "command": list(settings.runner_command),
        "workingDir": WORK_DIR,
        "env": [
            *({"name": name, "value": value} for name, value in job_variables(tj, spec, settings, rules).items()),
            {"name": ENV_MODEL_CACHE, "value": settings.model_cache_dir},
            *node_model_cache_env(settings),
            *writable_places_env(settings),
            *_store_env(tj, spec, settings),
        ],
        "resources": _container_resources(spec, settings),
        "volumeMounts": [
            {"name": "work", "mountPath": WORK_DIR},
            {"name": "model-cache", "mountPath": settings.model_cache_dir},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    pod: dict[str, Any] = {
        "serviceAccountName": child_name(tj),
        "automountServiceAccountToken": True,  # its own job's, to report into the job's status
        "securityContext": POD_SECURITY_CONTEXT,
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": _volumes(spec, settings),
    }
    pod.update(pod_placement(spec, settings))
    return pod


def build_runner_job(
    tj: Mapping[str, Any],
    settings: OperatorSettings,
    rules: EgressRules,
    kueue_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs the runner pod, whose source URL may lead only where `rules` permit. Retries,
    deadline and failure policy are the Job's: exit codes the contract marks as not worth retrying fail it at once,
    and evicted or preempted pods do not count. With `kueue_labels` it is handed to Kueue: created suspended, for
    Kueue to start once it admits it."""
    spec = runner_spec(tj, settings)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(tj, dict(kueue_labels) if kueue_labels else None),
        "spec": {
            "suspend": bool(kueue_labels),
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": RUNNER_CONTAINER,
                            "operator": "In",
                            "values": list(NOT_RETRIED_EXIT_CODES),
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {"metadata": {"labels": labels(tj)}, "spec": _pod_spec(tj, spec, settings, rules)},
        },
    }


def stranded_pod_status(now: str) -> dict[str, Any]:
    """The status patch that ends a runner pod stranded on a node whose kubelet is gone, as Kubernetes' pod garbage
    collector ends the pods of a node out of service: Failed, for its Job to count it and run another, and a
    DisruptionTarget, which the Job's failure policy does not count against the job's retries."""
    condition = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": STRANDED_REASON,
        "message": "the pod's node stopped answering: ended by the Kubescribe operator",
        "lastTransitionTime": now,
    }
    return {"status": {"phase": "Failed", "conditions": [condition]}}
