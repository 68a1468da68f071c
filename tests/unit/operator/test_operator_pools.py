import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubescribe.api.pools import POOL_LABEL, ModelGrants, RunnerPool
from kubescribe.api.timestamps import format_timestamp
from kubescribe.contract import (
    ENV_EGRESS_RULES,
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_LIMITS,
    ENV_MODEL_CACHE,
    ENV_NODE_MODEL_CACHE,
    ENV_POOL,
    ENV_POOL_CONCURRENCY,
    ENV_POOL_MODEL,
    ENV_POOL_NAMESPACE,
    ENV_SPEC,
    ENV_STORE_GRANTS,
    ENV_WORKER,
    ENV_WORKER_PORT,
    Grant,
    StoreGrants,
)
from kubescribe.operator import builders, pools
from kubescribe.operator.pools import POD, PoolJob, PoolRoom, assign
from kubescribe.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(
    runner_image="registry.example/kubescribe-runner:1.0",
    s3_endpoint="http://minio.store:9000",
    worker_port=9100,
    worker_drain_seconds=900,
    worker_service_account="ks-worker",
    runner_runtime_class_name="nvidia",
    runner_node_selector={"gpu": "yes"},
)
EGRESS = builders.egress_rules(SETTINGS, "https://10.96.0.1:443")


def pool(name: str = "tiny", uid: str = "pool-uid", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": "RunnerPool",
        "metadata": {"name": name, "namespace": "kubescribe", "uid": uid},
        "spec": {"model": "tiny.en", "namespaces": ["team-a"], **spec},
    }


def tj(namespace: str = "team-a", name: str = "jfk", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": name, "namespace": namespace, "uid": "job-uid"},
        "spec": {"source": {"s3": {"bucket": "audio", "key": "a.wav"}}, "resources": {"gpu": 0}, **spec},
    }


def pool_job(resource: dict[str, Any], kueue: bool = False) -> PoolJob:
    return pools.pool_job(resource, builders.runner_spec(resource, SETTINGS), kueue=kueue)


def room(name: str = "tiny", room: int = 2, namespaces: tuple[str, ...] = ("team-a",), gpus: int = 0) -> PoolRoom:
    return PoolRoom(name, frozenset(namespaces), "tiny.en", gpus, room)


# -- which jobs a pool may run -------------------------------------------------------------------------------------


def test_a_job_of_a_served_namespace_and_the_pools_model_qualifies() -> None:
    assert pools.qualifies(pool_job(tj()), room())
    assert pool_job(tj()).model == "tiny.en"  # the operator's default model, as the runner gets it


@pytest.mark.parametrize(
    ("resource", "pool_room"),
    [
        (tj(namespace="team-b"), room()),
        (tj(model="base.en"), room()),
        (tj(resources={"gpu": 1}), room()),
        (tj(), room(namespaces=())),
    ],
    ids=["unserved namespace", "another model", "more GPUs than a worker has", "a pool serving no namespace"],
)
def test_a_job_does_not_qualify_for_a_pool_that_does_not_serve_it(
    resource: dict[str, Any], pool_room: PoolRoom
) -> None:
    assert not pools.qualifies(pool_job(resource), pool_room)


def test_a_job_of_the_pools_s3_model_written_with_or_without_its_closing_slash_qualifies() -> None:
    s3_room = PoolRoom("large", frozenset({"team-a"}), "s3://models/large-v3/", 0, 2)
    assert pools.qualifies(pool_job(tj(model="s3://models/large-v3")), s3_room)
    assert pools.qualifies(pool_job(tj(model="s3://models/large-v3/")), s3_room)
    assert not pools.qualifies(pool_job(tj(model="s3://models/large-v3-turbo/")), s3_room)


def test_a_job_with_fewer_gpus_than_a_worker_qualifies() -> None:
    assert pools.qualifies(pool_job(tj(resources={"gpu": 1})), room(gpus=1))


@pytest.mark.parametrize(
    ("resource", "kueue", "why"),
    [
        (
            tj(source={"s3": {"bucket": "mine", "key": "k", "endpoint": "https://s3.example", "secretName": "mine"}}),
            False,
            "its own store",
        ),
        (tj(), True, "Kueue's"),
        (tj(resources={"gpu": 0, "nodeSelector": {"zone": "a"}}), False, "placement of its own"),
        (tj(resources={"gpu": 0, "priorityClassName": "high"}), False, "placement of its own"),
    ],
)
def test_some_jobs_never_run_in_a_pool_and_a_pooled_one_is_refused(
    resource: dict[str, Any], kueue: bool, why: str
) -> None:
    job = pool_job(resource, kueue=kueue)
    assert not pools.qualifies(job, room())
    assert pools.refusal(job) is None  # Auto: it runs in a pod
    refused = pools.refusal(pool_job({**resource, "spec": {**resource["spec"], "execution": "Pooled"}}, kueue))
    assert refused is not None
    assert refused[0] == pools.NOT_POOLABLE
    assert why in refused[1]


# -- assign --------------------------------------------------------------------------------------------------------


def job(name: str, execution: str = "Auto", namespace: str = "team-a") -> PoolJob:
    return PoolJob((namespace, name), "tiny.en", 0, execution, None)  # type: ignore[arg-type]


def test_auto_jobs_take_a_pools_room_then_get_pods() -> None:
    placements = assign([job("a"), job("b"), job("c")], [room(room=2)])
    assert placements == {("team-a", "a"): "tiny", ("team-a", "b"): "tiny", ("team-a", "c"): POD}


def test_an_isolated_job_always_gets_a_pod() -> None:
    assert assign([job("a", "Isolated")], [room()]) == {("team-a", "a"): POD}


def test_a_pooled_job_without_room_waits() -> None:
    placements = assign([job("a", "Pooled"), job("b", "Pooled")], [room(room=1)])
    assert placements == {("team-a", "a"): "tiny", ("team-a", "b"): None}
    assert assign([job("a", "Pooled")], [room(room=0)]) == {("team-a", "a"): None}
    assert assign([job("a", "Pooled")], []) == {("team-a", "a"): None}


def test_jobs_go_to_the_first_qualifying_pool_with_room_by_name() -> None:
    pools_ = [room("zeta", room=5), room("alpha", room=1), room("beta", room=1, namespaces=("team-b",))]
    placements = assign([job("a"), job("b"), job("c", namespace="team-b")], pools_)
    assert placements == {("team-a", "a"): "alpha", ("team-a", "b"): "zeta", ("team-b", "c"): "beta"}


def test_pooled_jobs_without_a_pool_with_room_wait_outside_the_queue() -> None:
    jobs = [job("a", "Pooled"), job("b"), job("c", "Pooled", namespace="team-b"), job("d", "Pooled")]
    assert pools.without_room(jobs, [room(room=1)]) == {("team-b", "c")}
    assert pools.without_room(jobs, [room(room=0)]) == {("team-a", "a"), ("team-b", "c"), ("team-a", "d")}


def test_a_pooled_job_waits_for_the_first_pool_that_would_take_it() -> None:
    pools_ = [room("zeta", room=0), room("alpha", room=0, namespaces=("team-b",))]
    assert pools.waiting_pool(job("a", "Pooled"), pools_) == "zeta"
    assert pools.waiting_pool(job("a", "Pooled", namespace="team-c"), pools_) is None


# -- room and replicas ---------------------------------------------------------------------------------------------


def test_room_is_ready_workers_times_concurrency_less_running_assignments() -> None:
    parsed = RunnerPool.model_validate(pool(concurrency=4))
    assert pools.pool_room(parsed, ready_workers=2, running=3).room == 5
    assert pools.pool_room(parsed, ready_workers=0, running=0).room == 0
    assert pools.pool_room(parsed, ready_workers=1, running=6).room == 0  # never below 0


def test_ready_workers_are_read_from_the_deployments_status() -> None:
    assert pools.ready_workers({"status": {"readyReplicas": 3}}) == 3
    assert pools.ready_workers({"status": {}}) == 0
    assert pools.ready_workers(None) == 0


@pytest.mark.parametrize(
    ("demand", "replicas"),
    [(0, 1), (1, 1), (4, 1), (5, 2), (12, 3), (100, 3)],
)
def test_replicas_cover_the_demand_at_the_pools_concurrency_within_min_and_max(demand: int, replicas: int) -> None:
    parsed = RunnerPool.model_validate(pool(concurrency=4, replicas={"min": 1, "max": 3}))
    assert pools.worker_replicas(parsed, demand) == replicas


def test_a_pool_of_zero_replicas_stays_at_zero() -> None:
    parsed = RunnerPool.model_validate(pool(replicas={"min": 0, "max": 0}))
    assert pools.worker_replicas(parsed, 10) == 0


def test_an_assignment_is_finished_once_its_worker_reports_an_outcome() -> None:
    assert not pools.is_finished({"status": {"worker": "w", "progress": {"percent": 5}}})
    assert pools.is_finished({"status": {"result": {"outputs": {}}}})
    assert pools.is_finished({"status": {"failure": {"reason": "R", "message": "m", "exitCode": 1}}})


def test_the_pools_status() -> None:
    assert pools.pool_status(replicas=2, ready=1, running=3, waiting=4) == {
        "replicas": 2,
        "readyReplicas": 1,
        "running": 3,
        "waiting": 4,
    }


# -- the workers' Deployment ---------------------------------------------------------------------------------------


def deployment(**spec: Any) -> dict[str, Any]:
    return pools.build_worker_deployment(pool(**spec), SETTINGS, replicas=2)


def test_the_workers_run_the_worker_in_the_runner_image_with_the_pools_settings() -> None:
    built = deployment(concurrency=3)
    assert built["metadata"]["name"] == "tiny-workers"
    assert built["metadata"]["namespace"] == "kubescribe"
    assert built["metadata"]["labels"][POOL_LABEL] == "tiny"
    assert built["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "kubescribe.io/v1alpha1",
            "kind": "RunnerPool",
            "name": "tiny",
            "uid": "pool-uid",
            "controller": True,
        }
    ]
    assert built["spec"]["replicas"] == 2
    template = built["spec"]["template"]
    assert built["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"]
    assert template["metadata"]["labels"][POOL_LABEL] == "tiny"
    pod = template["spec"]
    assert pod["serviceAccountName"] == "ks-worker"
    assert pod["terminationGracePeriodSeconds"] == 900
    [container] = pod["containers"]
    assert container["image"] == "registry.example/kubescribe-runner:1.0"
    assert container["command"] == ["python", "-m", "kubescribe.runner.worker"]
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}
    assert env[ENV_POOL] == "tiny"
    assert env[ENV_POOL_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env[ENV_POOL_MODEL] == "tiny.en"
    assert env[ENV_POOL_CONCURRENCY] == "3"
    assert env[ENV_WORKER] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[ENV_WORKER_PORT] == "9100"
    assert env[ENV_MODEL_CACHE] == SETTINGS.model_cache_dir
    assert not {name for name in env if "AWS" in name or name == ENV_STORE_GRANTS}
    assert container["ports"] == [{"name": "http", "containerPort": 9100}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_workers_have_a_runner_pods_security() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"] == builders.POD_SECURITY_CONTEXT
    assert container["securityContext"] == builders.CONTAINER_SECURITY_CONTEXT
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts == {"work": "/work", "model-cache": SETTINGS.model_cache_dir, "tmp": "/tmp"}
    assert {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume} == set(mounts)


def test_the_work_directory_holds_a_source_for_each_job_at_once() -> None:
    volumes = {
        v["name"]: v["emptyDir"]["sizeLimit"] for v in deployment(concurrency=4)["spec"]["template"]["spec"]["volumes"]
    }
    work = 4 * SETTINGS.runner_max_source_bytes + builders.WORK_MARGIN_BYTES
    assert volumes["work"] == f"{-(-work // builders.MIB)}Mi"


def test_a_cpu_pool_requests_its_cpu_and_memory_and_gets_no_gpu_placement() -> None:
    pod = deployment(cpu="2", memory="6Gi", nodeSelector={"pool": "yes"}, priorityClassName="warm")["spec"]["template"][
        "spec"
    ]
    [container] = pod["containers"]
    assert container["resources"]["requests"]["cpu"] == "2"
    assert container["resources"]["requests"]["memory"] == "6Gi"
    assert container["resources"]["limits"]["memory"] == "6Gi"
    assert builders.GPU_RESOURCE not in container["resources"]["limits"]
    assert pod["nodeSelector"] == {"pool": "yes"}
    assert pod["priorityClassName"] == "warm"
    assert "runtimeClassName" not in pod


def test_a_gpu_pool_gets_its_gpus_and_the_runner_placement_for_gpus() -> None:
    tolerations = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    pod = deployment(gpu=1, tolerations=tolerations)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["limits"][builders.GPU_RESOURCE] == "1"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"gpu": "yes"}
    assert tolerations[0] in pod["tolerations"]


def test_the_deployment_is_patched_only_when_what_the_operator_builds_changed() -> None:
    built = deployment()
    live = {**built, "spec": {**built["spec"], "template": {"changed": "by the API server's defaults"}}}
    assert pools.deployment_patch(live, built) is None
    rescaled = pools.build_worker_deployment(pool(), SETTINGS, replicas=5)
    assert pools.deployment_patch(live, rescaled) == {"spec": {"replicas": 5}}
    changed = pools.build_worker_deployment(pool(concurrency=8), SETTINGS, replicas=2)
    patch = pools.deployment_patch(live, changed)
    assert patch is not None
    assert patch["spec"] == changed["spec"]
    assert patch["metadata"]["annotations"] == changed["metadata"]["annotations"]


def test_a_long_pool_name_gives_a_deployment_name_that_is_a_dns_label() -> None:
    name = pools.deployment_name(pool(name="p" * 60))
    assert len(name) <= 63
    assert name != pools.deployment_name(pool(name="p" * 61))


# -- an s3:// model --------------------------------------------------------------------------------------------------

S3_MODEL = "s3://models/large-v3/"
NOW = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)


def parsed(model: str = S3_MODEL, **status: Any) -> RunnerPool:
    return RunnerPool.model_validate({**pool(model=model), "status": status})


def granted(
    model: str = S3_MODEL, age: timedelta = timedelta(0), error: str | None = None, urls: bool = True
) -> dict[str, Any]:
    """status.modelGrants of an attempt `age` ago: its URLs expire a validity after it, unless it made none."""
    expires = format_timestamp(NOW - age + pools.MODEL_GRANTS_VALIDITY)
    return {
        "model": model,
        "attempted": format_timestamp(NOW - age),
        **({"expires": expires} if urls else {}),
        **({"error": error} if error else {}),
    }


@pytest.mark.parametrize(
    ("pool_", "due"),
    [
        (parsed(model="tiny.en"), False),
        (parsed(), True),
        (parsed(modelGrants=granted()), False),
        (parsed(modelGrants=granted(age=pools.MODEL_GRANTS_VALIDITY / 2 - timedelta(minutes=1))), False),
        (parsed(modelGrants=granted(age=pools.MODEL_GRANTS_VALIDITY / 2)), True),
        (parsed(modelGrants=granted(model="s3://models/base/")), True),
        (parsed(modelGrants=granted(error="s3://models/large-v3/ holds no objects", urls=False)), False),
        (parsed(modelGrants=granted(age=pools.MODEL_GRANTS_RETRY, error="holds no objects", urls=False)), True),
        (parsed(modelGrants=granted(age=pools.MODEL_GRANTS_RETRY, error="cannot list: NoSuchBucket")), True),
    ],
)
def test_an_s3_model_is_granted_at_first_then_renewed_when_half_its_time_has_passed(
    pool_: RunnerPool, due: bool
) -> None:
    assert pools.model_grants_due(pool_, NOW) is due


def test_the_workers_of_an_s3_model_take_its_urls_from_the_pools_secret_and_read_through_the_nodes_cache() -> None:
    settings = SETTINGS.model_copy(update={"node_model_cache": "http://kubescribe-model-cache:8480"})
    built = pools.build_worker_deployment(pool(model=S3_MODEL), settings, replicas=1)
    [container] = built["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}
    assert env[ENV_STORE_GRANTS] == {"secretKeyRef": {"name": "tiny-model", "key": ENV_STORE_GRANTS}}
    assert env[ENV_NODE_MODEL_CACHE] == "http://kubescribe-model-cache:8480"
    assert not {name for name in env if "AWS" in name}
    secret = pools.build_model_secret(pool(model=S3_MODEL), GRANTS)
    assert secret["metadata"]["name"] == "tiny-model"
    assert secret["metadata"]["ownerReferences"] == built["metadata"]["ownerReferences"]
    assert StoreGrants.model_validate_json(secret["stringData"][ENV_STORE_GRANTS]) == GRANTS


def test_a_renewal_leaves_the_workers_deployment_as_it_is() -> None:
    """The URLs live in the Secret, not in the pod template: renewing them rolls no worker out."""
    built = pools.build_worker_deployment(pool(model=S3_MODEL), SETTINGS, replicas=1)
    renewed = pools.build_worker_deployment(
        {**pool(model=S3_MODEL), "status": {"modelGrants": granted()}}, SETTINGS, replicas=1
    )
    assert pools.deployment_patch(built, renewed) is None


def test_new_urls_replace_the_secrets_and_say_until_when() -> None:
    previous = ModelGrants.model_validate(granted(age=pools.MODEL_GRANTS_VALIDITY / 2))
    assert pools.renewed_model_grants(S3_MODEL, NOW, GRANTS, previous) == (
        {"model": S3_MODEL, "attempted": "2025-11-03T12:00:00Z", "expires": "2025-11-03T13:00:00Z"},
        True,
    )


def test_a_failed_renewal_keeps_the_urls_that_have_not_expired() -> None:
    failed = StoreGrants(expires="2025-11-04T12:00:00Z", model_error="cannot list s3://models/large-v3/: SlowDown")
    previous = ModelGrants.model_validate(granted(age=pools.MODEL_GRANTS_VALIDITY / 2))
    status, replace = pools.renewed_model_grants(S3_MODEL, NOW, failed, previous)
    assert not replace
    assert status == {
        "model": S3_MODEL,
        "attempted": "2025-11-03T12:00:00Z",
        "expires": previous.expires,
        "error": "cannot list s3://models/large-v3/: SlowDown",
    }


@pytest.mark.parametrize(
    "previous",
    [
        None,
        granted(age=pools.MODEL_GRANTS_VALIDITY),
        granted(model="s3://models/base/"),
        granted(error="holds no objects", urls=False),
    ],
)
def test_a_failure_with_no_urls_left_to_keep_goes_into_the_secret(previous: dict[str, Any] | None) -> None:
    """The workers then fail with the reason, rather than wait for a Secret or load another model."""
    failed = StoreGrants(expires="2025-11-04T12:00:00Z", model_error="s3://models/large-v3/ holds no objects")
    parsed_previous = ModelGrants.model_validate(previous) if previous else None
    status, replace = pools.renewed_model_grants(S3_MODEL, NOW, failed, parsed_previous)
    assert replace
    assert status == {
        "model": S3_MODEL,
        "attempted": "2025-11-03T12:00:00Z",
        "error": "s3://models/large-v3/ holds no objects",
    }


# -- assignments ---------------------------------------------------------------------------------------------------

GRANTS = StoreGrants(
    expires="2025-11-03T13:00:00Z",
    source=Grant(url="https://store.example/audio/a.wav?X-Amz-Signature=abc", uri="s3://audio/a.wav"),
    outputs={
        "json": Grant(url="https://store.example/transcripts/a.json?X-Amz-Signature=def", uri="s3://transcripts/a.json")
    },
)


def test_an_assignments_environment_is_what_a_runner_pod_of_the_job_gets_about_its_job() -> None:
    resource = tj()
    environment = pools.assignment_environment(resource, SETTINGS, EGRESS, GRANTS)
    runner = builders.build_runner_job(resource, SETTINGS, EGRESS)
    [container] = runner["spec"]["template"]["spec"]["containers"]
    pod_env = {item["name"]: item.get("value") for item in container["env"]}
    for name in (ENV_SPEC, ENV_JOB_NAME, ENV_JOB_NAMESPACE, ENV_EGRESS_RULES, ENV_LIMITS):
        assert environment[name] == pod_env[name]
    assert json.loads(environment[ENV_STORE_GRANTS]) == json.loads(GRANTS.model_dump_json())
    assert set(environment) == {
        ENV_SPEC,
        ENV_JOB_NAME,
        ENV_JOB_NAMESPACE,
        ENV_EGRESS_RULES,
        ENV_LIMITS,
        ENV_STORE_GRANTS,
    }


def test_an_assignment_names_its_job_attempt_and_pool_and_is_owned_by_the_pool() -> None:
    assignment = pools.build_assignment(tj(), pool(), 2, {"A": "b"})
    assert assignment["kind"] == "RunnerAssignment"
    assert assignment["metadata"]["name"] == "job-uid-2"
    assert assignment["metadata"]["namespace"] == "kubescribe"
    assert assignment["metadata"]["labels"][POOL_LABEL] == "tiny"
    assert assignment["metadata"]["labels"][pools.JOB_UID_LABEL] == "job-uid"
    assert assignment["metadata"]["ownerReferences"][0]["kind"] == "RunnerPool"
    assert assignment["metadata"]["ownerReferences"][0]["uid"] == "pool-uid"
    assert assignment["spec"] == {
        "pool": "tiny",
        "job": {"namespace": "team-a", "name": "jfk", "uid": "job-uid"},
        "attempt": 2,
        "environment": {"A": "b"},
    }
