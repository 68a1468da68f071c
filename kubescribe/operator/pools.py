"""RunnerPools as pure functions: which pool an admitted job runs in (`assign`), how many workers a pool runs and
what its status says, and the objects the operator makes for it: the workers' Deployment, the Secret with the
presigned URLs of an s3:// model, and a job's RunnerAssignment. Pools live in the operator's namespace.

A job qualifies for a pool when all of these hold (`qualifies`):

- the pool serves the job's namespace, and the job's model (the operator's default when it names none) is the
  pool's;
- the job uses the operator's store: one that names its own store credentials (source.s3.secretName) never runs in
  a pool, whose workers hold no credentials;
- the job is not Kueue's: Kueue admits runner Jobs, not pool slots;
- the job names no placement of its own (resources.nodeSelector, tolerations, priorityClassName): the pool places
  its workers;
- the job's GPUs are no more than each worker's.

A pool has room for its ready workers times concurrency jobs, less the unfinished assignments it holds. An `Isolated`
job always gets a pod of its own; an `Auto` job the first qualifying pool with room (by name), else a pod; a `Pooled`
job such a pool, else it waits (`NoPoolCapacity`)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from kubescribe.api.pools import (
    ASSIGNMENT_KIND,
    POOL_KIND,
    POOL_LABEL,
    ModelGrants,
    RunnerPool,
)
from kubescribe.api.timestamps import format_timestamp, parse_timestamp
from kubescribe.api.v1alpha1 import API_VERSION, Execution, TranscriptionJobSpec, model_location, same_model
from kubescribe.contract import (
    ENV_MODEL_CACHE,
    ENV_POOL,
    ENV_POOL_CONCURRENCY,
    ENV_POOL_MODEL,
    ENV_POOL_NAMESPACE,
    ENV_STORE_GRANTS,
    ENV_WORKER,
    ENV_WORKER_PORT,
    WORKER_LIVENESS_PATH,
    WORKER_READINESS_PATH,
    EgressRules,
    StoreGrants,
)
from kubescribe.operator import builders
from kubescribe.operator.placement import raised_limits
from kubescribe.operator.settings import OperatorSettings

Key = tuple[str, str]
"""(namespace, name) of a TranscriptionJob."""
POD: Final = "Pod"
"""`assign`'s answer for a job that runs in a pod of its own (no pool name can be this: pool names are lowercase)."""
NO_POOL_CAPACITY: Final = "NoPoolCapacity"
"""The reason of a Pooled job that waits: no pool that serves it has room."""
NOT_POOLABLE: Final = "NotPoolable"
"""The reason of a Pooled job that no pool may ever run."""
JOB_UID_LABEL: Final = "kubescribe.io/job-uid"
"""On an assignment: the uid of the job it runs."""
WORKER_CONTAINER: Final = "worker"
SPEC_HASH_ANNOTATION: Final = "kubescribe.io/spec-hash"
"""On a pool's Deployment: a hash of what the operator built, so that a change of the pool or of the operator's
settings is rolled out, and nothing else is patched."""
WORKER_PORT_NAME: Final = "http"
MODEL_GRANTS_VALIDITY: Final = timedelta(days=1)
"""How long the presigned URLs of a pool's s3:// model live; renewed once half of that has passed, so that a worker
that starts reads its model with at least half of it left."""
MODEL_GRANTS_RETRY: Final = timedelta(minutes=1)
"""How soon the operator tries again to grant an s3:// model it could not (absent, too large, the store failing)."""


@dataclass(frozen=True)
class PoolJob:
    """An admitted job as `assign` sees it."""

    key: Key
    model: str
    gpus: int
    execution: Execution
    unpoolable: str | None = None
    """Why no pool may ever run it, if none may: it names its own store, is Kueue's or names a placement."""


@dataclass(frozen=True)
class PoolRoom:
    """A pool as `assign` sees it: what it serves and how many more jobs its ready workers take."""

    name: str
    namespaces: frozenset[str]
    model: str
    gpus: int
    room: int


def pool_job(tj: Mapping[str, Any], spec: TranscriptionJobSpec, *, kueue: bool) -> PoolJob:
    """The job as `assign` sees it; `spec` is its runner spec (the operator's defaults filled in), `kueue` whether
    it is Kueue's."""
    resources = spec.resources
    if not builders.uses_operator_store(tj):
        unpoolable = "it names its own store (source.s3.secretName), whose credentials a pool's workers never hold"
    elif kueue:
        unpoolable = "it is Kueue's, and Kueue runs jobs in runner pods"
    elif resources.node_selector or resources.tolerations or resources.priority_class_name:
        unpoolable = "it names a placement of its own (nodeSelector, tolerations or priorityClassName)"
    else:
        unpoolable = None
    return PoolJob(
        key=(tj["metadata"]["namespace"], tj["metadata"]["name"]),
        model=spec.model or "",
        gpus=resources.gpu,
        execution=spec.execution,
        unpoolable=unpoolable,
    )


def refusal(job: PoolJob) -> tuple[str, str] | None:
    """Why a Pooled job may never run, if no pool may run it; None for other jobs."""
    if job.execution != "Pooled" or job.unpoolable is None:
        return None
    return NOT_POOLABLE, f"execution Pooled, but no pool may run it: {job.unpoolable}; use Auto or Isolated"


def qualifies(job: PoolJob, pool: PoolRoom) -> bool:
    namespace = job.key[0]
    return (
        job.unpoolable is None
        and namespace in pool.namespaces
        and same_model(job.model, pool.model)
        and job.gpus <= pool.gpus
    )


def pool_room(pool: RunnerPool, ready_workers: int, running: int) -> PoolRoom:
    """The pool with its room: `ready_workers` times concurrency, less the `running` assignments, never below 0."""
    spec = pool.spec
    name: str = pool.metadata["name"]
    room = max(0, ready_workers * spec.concurrency - running)
    return PoolRoom(name, frozenset(spec.namespaces), spec.model, spec.gpu, room)


def assign(jobs: Sequence[PoolJob], pools: Iterable[PoolRoom]) -> dict[Key, str | None]:
    """For each admitted job without children, in admission order: the pool it runs in, POD, or None (a Pooled job
    left to wait). Each job sent to a pool takes one of its room."""
    room = {pool.name: pool.room for pool in pools}
    by_name = sorted(pools, key=lambda pool: pool.name)
    placements: dict[Key, str | None] = {}
    for job in jobs:
        chosen = None
        if job.execution != "Isolated":
            chosen = next((pool.name for pool in by_name if room[pool.name] > 0 and qualifies(job, pool)), None)
        if chosen is not None:
            room[chosen] -= 1
        placements[job.key] = chosen if chosen is not None else (None if job.execution == "Pooled" else POD)
    return placements


def without_room(jobs: Iterable[PoolJob], pools: Sequence[PoolRoom]) -> set[Key]:
    """The Pooled jobs for which no pool that would take them has room now: they wait outside the admission queue,
    so that they hold no running slot."""
    return {
        job.key
        for job in jobs
        if job.execution == "Pooled" and not any(pool.room > 0 and qualifies(job, pool) for pool in pools)
    }


def waiting_pool(job: PoolJob, pools: Iterable[PoolRoom]) -> str | None:
    """The pool a Pooled job without room waits for: the first that qualifies, by name, whose workers it counts
    toward; None when none does."""
    return next((pool.name for pool in sorted(pools, key=lambda pool: pool.name) if qualifies(job, pool)), None)


def worker_replicas(pool: RunnerPool, demand: int) -> int:
    """Workers for `demand` jobs (running and waiting): enough to run them all at the pool's concurrency, within
    replicas.min and replicas.max."""
    spec = pool.spec
    wanted = math.ceil(demand / spec.concurrency)
    return max(spec.replicas.min, min(spec.replicas.max, wanted))


def pool_status(*, replicas: int, ready: int, running: int, waiting: int) -> dict[str, int]:
    return {"replicas": replicas, "readyReplicas": ready, "running": running, "waiting": waiting}


def ready_workers(deployment: Mapping[str, Any] | None) -> int:
    """Workers ready to take jobs, as the pool's Deployment reports them."""
    ready: int = ((deployment or {}).get("status") or {}).get("readyReplicas") or 0
    return ready


def is_finished(assignment: Mapping[str, Any]) -> bool:
    """Whether the assignment's worker reported its outcome: a result or a failure."""
    status = assignment.get("status") or {}
    return bool(status.get("result") or status.get("failure"))


# -- objects -------------------------------------------------------------------------------------------------------


def model_secret_name(pool_name: str) -> str:
    """`<pool>-model`, shortened with a hash to fit a DNS label."""
    readable = f"{pool_name}-model"
    return readable if len(readable) <= 63 else builders.shortened(readable, pool_name)


def model_grants_due(pool: RunnerPool, now: datetime) -> bool:
    """Whether the operator presigns the pool's s3:// model now: never for other models; when it has not for this
    model, when its URLs have lived half their time, or a while after it last failed to."""
    if model_location(pool.spec.model) is None:
        return False
    granted = pool.status.model_grants if pool.status else None
    if granted is None or granted.model != pool.spec.model:
        return True
    if granted.error or granted.expires is None:
        return now - parse_timestamp(granted.attempted) >= MODEL_GRANTS_RETRY
    return parse_timestamp(granted.expires) - now <= MODEL_GRANTS_VALIDITY / 2


def renewed_model_grants(
    model: str, now: datetime, grants: StoreGrants, previous: ModelGrants | None
) -> tuple[dict[str, Any], bool]:
    """The pool's status.modelGrants once `grants` of `model` were made at `now`, and whether they go into its
    Secret: not when they failed while the Secret holds URLs of this model that have not expired, which workers
    starting meanwhile still use."""
    status = {"model": model, "attempted": format_timestamp(now)}
    if grants.model_error is None:
        return {**status, "expires": grants.expires}, True
    status["error"] = grants.model_error
    if previous and previous.model == model and previous.expires and parse_timestamp(previous.expires) > now:
        return {**status, "expires": previous.expires}, False
    return status, True


def build_model_secret(pool: Mapping[str, Any], grants: StoreGrants) -> dict[str, Any]:
    """The presigned URLs of the pool's s3:// model, which its workers take from the Secret as a runner pod takes
    its job's; owned by the pool."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": model_secret_name(pool["metadata"]["name"]),
            "namespace": pool["metadata"]["namespace"],
            "labels": worker_labels(pool),
            "ownerReferences": [pool_owner_reference(pool)],
        },
        "stringData": {ENV_STORE_GRANTS: grants.model_dump_json()},
    }


def deployment_name(pool: Mapping[str, Any]) -> str:
    """`<pool>-workers`, shortened with a hash to fit a DNS label."""
    name: str = pool["metadata"]["name"]
    readable = f"{name}-workers"
    return readable if len(readable) <= 63 else builders.shortened(readable, name)


def pool_owner_reference(pool: Mapping[str, Any]) -> dict[str, Any]:
    metadata = pool["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": POOL_KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
    }


def worker_labels(pool: Mapping[str, Any]) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubescribe",
        "app.kubernetes.io/component": "worker",
        POOL_LABEL: pool["metadata"]["name"],
    }


def _worker_resources(pool: RunnerPool, settings: OperatorSettings) -> dict[str, Any]:
    """The settings' requests and limits for runners with the pool's: its CPU and memory (request and limit), its
    GPUs and, with GPUs, the settings' extended resources. Without the pool's memory, the limit allows for
    `concurrency` of the longest audio the runner takes."""
    spec = pool.spec
    requests = {**settings.runner_resource_requests, "memory": spec.memory or settings.runner_memory_request}
    if spec.cpu:
        requests["cpu"] = spec.cpu
    needed = (
        builders.RUNNER_BASE_MEMORY_BYTES
        + builders.model_bytes(spec.model, settings)
        + spec.concurrency * builders.MEMORY_BYTES_PER_AUDIO_SECOND * settings.runner_max_duration_seconds
    )
    memory = spec.memory or settings.runner_memory_limit or f"{math.ceil(needed / builders.MIB)}Mi"
    limits = {**settings.runner_resource_limits, "memory": memory}
    if spec.gpu > 0:
        limits.update(settings.runner_extra_resources)
        limits[builders.GPU_RESOURCE] = str(spec.gpu)
    return {"requests": requests, "limits": raised_limits(limits, requests)}


def _worker_volumes(pool: RunnerPool, settings: OperatorSettings) -> list[dict[str, Any]]:
    """A runner pod's emptyDirs, the work directory large enough for `concurrency` sources at once."""
    spec = pool.spec
    model = max(settings.max_model_bytes, builders.model_bytes(spec.model, settings))
    work = spec.concurrency * settings.runner_max_source_bytes + builders.WORK_MARGIN_BYTES
    size_limits = {
        "work": f"{math.ceil(work / builders.MIB)}Mi",
        "model-cache": f"{math.ceil((model + builders.WORK_MARGIN_BYTES) / builders.MIB)}Mi",
        "tmp": builders.TMP_SIZE_LIMIT,
    }
    return [{"name": name, "emptyDir": {"sizeLimit": size}} for name, size in size_limits.items()]


def _worker_placement(pool: RunnerPool, settings: OperatorSettings) -> dict[str, Any]:
    """As a runner pod's: with GPUs, the settings' node selector, tolerations and runtime class under the pool's;
    the pool's priority class, else the settings'."""
    spec = pool.spec
    gpus = spec.gpu > 0
    tolerations: list[dict[str, Any]] = []
    for toleration in [*(settings.runner_tolerations if gpus else []), *spec.tolerations]:
        dumped = toleration.model_dump(mode="json", by_alias=True, exclude_none=True)
        if dumped not in tolerations:
            tolerations.append(dumped)
    fields = {
        "nodeSelector": {**(settings.runner_node_selector if gpus else {}), **spec.node_selector},
        "tolerations": tolerations,
        "runtimeClassName": settings.runner_runtime_class_name if gpus else "",
        "priorityClassName": spec.priority_class_name or settings.runner_priority_class_name,
        "imagePullSecrets": [{"name": name} for name in settings.runner_image_pull_secrets],
    }
    return {key: value for key, value in fields.items() if value}


def _model_grants_env(pool: RunnerPool) -> list[dict[str, Any]]:
    """For an s3:// model: its presigned URLs, from the pool's Secret (`build_model_secret`)."""
    if model_location(pool.spec.model) is None:
        return []
    secret = {"name": model_secret_name(pool.metadata["name"]), "key": ENV_STORE_GRANTS}
    return [{"name": ENV_STORE_GRANTS, "valueFrom": {"secretKeyRef": secret}}]


def _worker_container(pool: RunnerPool, settings: OperatorSettings) -> dict[str, Any]:
    spec = pool.spec
    probe = {
        "httpGet": {"path": WORKER_READINESS_PATH, "port": WORKER_PORT_NAME},
        "periodSeconds": 5,
        "failureThreshold": 1,
    }
    return {
        "name": WORKER_CONTAINER,
        "image": settings.runner_image,
        **({"imagePullPolicy": settings.runner_image_pull_policy} if settings.runner_image_pull_policy else {}),
        "command": list(settings.worker_command),
        "workingDir": builders.WORK_DIR,
        "env": [
            {"name": ENV_POOL, "value": pool.metadata["name"]},
            {"name": ENV_POOL_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": ENV_POOL_MODEL, "value": spec.model},
            {"name": ENV_POOL_CONCURRENCY, "value": str(spec.concurrency)},
            {"name": ENV_WORKER, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": ENV_WORKER_PORT, "value": str(settings.worker_port)},
            {"name": ENV_MODEL_CACHE, "value": settings.model_cache_dir},
            *_model_grants_env(pool),
            *builders.node_model_cache_env(settings),
            *builders.writable_places_env(settings),
        ],
        "ports": [{"name": WORKER_PORT_NAME, "containerPort": settings.worker_port}],
        "readinessProbe": probe,
        "livenessProbe": {
            "httpGet": {"path": WORKER_LIVENESS_PATH, "port": WORKER_PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "resources": _worker_resources(pool, settings),
        "volumeMounts": [
            {"name": "work", "mountPath": builders.WORK_DIR},
            {"name": "model-cache", "mountPath": settings.model_cache_dir},
            {"name": "tmp", "mountPath": builders.TMP_DIR},
        ],
        "securityContext": builders.CONTAINER_SECURITY_CONTEXT,
    }


def build_worker_deployment(pool: Mapping[str, Any], settings: OperatorSettings, replicas: int) -> dict[str, Any]:
    """The pool's workers: the runner's image running the worker, with a runner pod's security and placement, the
    workers' ServiceAccount, and a grace period to finish the jobs it holds when stopped. Owned by the pool."""
    parsed = RunnerPool.model_validate(pool)
    labels = worker_labels(pool)
    template = {
        "metadata": {"labels": labels},
        "spec": {
            "serviceAccountName": settings.worker_service_account,
            "automountServiceAccountToken": True,  # to claim and report its assignments
            "securityContext": builders.POD_SECURITY_CONTEXT,
            "terminationGracePeriodSeconds": settings.worker_drain_seconds,
            "containers": [_worker_container(parsed, settings)],
            "volumes": _worker_volumes(parsed, settings),
            **_worker_placement(parsed, settings),
        },
    }
    spec = {"selector": {"matchLabels": labels}, "template": template}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(pool),
            "namespace": pool["metadata"]["namespace"],
            "labels": labels,
            "annotations": {SPEC_HASH_ANNOTATION: digest},
            "ownerReferences": [pool_owner_reference(pool)],
        },
        "spec": {"replicas": replicas, **spec},
    }


def deployment_patch(live: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that makes the live Deployment what the operator built, or None when it already is (its
    replicas and the hash of the rest)."""
    annotations = live["metadata"].get("annotations") or {}
    same_spec = annotations.get(SPEC_HASH_ANNOTATION) == wanted["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    if same_spec and live["spec"].get("replicas") == wanted["spec"]["replicas"]:
        return None
    if same_spec:
        return {"spec": {"replicas": wanted["spec"]["replicas"]}}
    metadata = {key: wanted["metadata"][key] for key in ("labels", "annotations")}
    return {"metadata": metadata, "spec": wanted["spec"]}


def assignment_name(tj: Mapping[str, Any], attempt: int) -> str:
    return f"{tj['metadata']['uid']}-{attempt}"


def assignment_environment(
    tj: Mapping[str, Any], settings: OperatorSettings, rules: EgressRules, grants: StoreGrants
) -> dict[str, str]:
    """What a runner pod of the job gets in its environment about its job, with its presigned URLs inline."""
    spec = builders.runner_spec(tj, settings)
    return {**builders.job_variables(tj, spec, settings, rules), ENV_STORE_GRANTS: grants.model_dump_json()}


def build_assignment(
    tj: Mapping[str, Any], pool: Mapping[str, Any], attempt: int, environment: Mapping[str, str]
) -> dict[str, Any]:
    """One attempt of the job in the pool's namespace, for the pool's workers to claim; owned by the pool."""
    metadata = tj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": ASSIGNMENT_KIND,
        "metadata": {
            "name": assignment_name(tj, attempt),
            "namespace": pool["metadata"]["namespace"],
            "labels": {
                "app.kubernetes.io/name": "kubescribe",
                POOL_LABEL: pool["metadata"]["name"],
                JOB_UID_LABEL: metadata["uid"],
            },
            "ownerReferences": [pool_owner_reference(pool)],
        },
        "spec": {
            "pool": pool["metadata"]["name"],
            "job": {"namespace": metadata["namespace"], "name": metadata["name"], "uid": metadata["uid"]},
            "attempt": attempt,
            "environment": dict(environment),
        },
    }
