import ipaddress
import json
import re
from typing import Any

import pytest
from kubernetes.utils import parse_quantity

from kubescribe.api import TranscriptionJobSpec
from kubescribe.contract import (
    ENV_EGRESS_RULES,
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_LIMITS,
    ENV_MODEL_CACHE,
    ENV_SPEC,
    ENV_STORE_GRANTS,
    NOT_RETRIED_EXIT_CODES,
    TERMINATION_MESSAGE_PATH,
    EgressRules,
    Endpoint,
    Grant,
    RunnerLimits,
    StoreGrants,
)
from kubescribe.operator import builders
from kubescribe.operator.builders import (
    build_grants_secret,
    build_role,
    build_role_binding,
    build_runner_job,
    build_service_account,
    child_name,
    pod_selector,
    uses_operator_store,
)
from kubescribe.operator.settings import OperatorSettings

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
SETTINGS = OperatorSettings(
    runner_image="registry.example/kubescribe:1.0",
    s3_endpoint="http://minio.store:9000",
    model_cache_dir="/models",
)
EGRESS = builders.egress_rules(SETTINGS, "https://10.96.0.1:443")


def tj(name: str = "jfk", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": name, "namespace": "team-a", "uid": "0b6c-uid", "generation": 1, "labels": labels or {}},
        "spec": {"source": {"s3": {"bucket": "audio", "key": "speeches/jfk.flac"}}, **spec},
    }


def container(job: dict[str, Any]) -> dict[str, Any]:
    [runner] = job["spec"]["template"]["spec"]["containers"]
    return runner


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(job)["env"]}


def test_settings_read_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESCRIBE_MAX_RUNNING_JOBS", "3")
    monkeypatch.setenv("KUBESCRIBE_RUNNER_COMMAND", '["kubescribe-runner", "--verbose"]')
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-print")
    settings = OperatorSettings()
    assert settings.max_running_jobs == 3
    assert settings.runner_command == ["kubescribe-runner", "--verbose"]
    assert settings.s3_secret_key.get_secret_value() == "do-not-print"
    assert "do-not-print" not in repr(settings)
    assert settings.max_gpus_per_namespace == 4


@pytest.mark.parametrize("name", ["jfk", "a" * 52, "a" * 53, "a" * 253, "talk.2024.part-1", "x." * 120 + "y"])
def test_child_names_are_short_dns_labels_and_deterministic(name: str) -> None:
    first = child_name(tj(name))
    assert first == child_name(tj(name))
    assert len(first) <= 63
    assert DNS_LABEL.match(first)
    assert first.startswith("transcribe-")
    value = builders.job_label_value(tj(name))
    assert len(value) <= 63
    assert LABEL_VALUE.match(value)


def test_short_names_are_kept_readable_and_changed_names_do_not_collide() -> None:
    assert child_name(tj("jfk")) == "transcribe-jfk"
    assert child_name(tj("a" * 52)) == "transcribe-" + "a" * 52
    assert child_name(tj("a.b")) != child_name(tj("a-b"))
    long_names = ["b" * 100 + "1", "b" * 100 + "2"]
    assert child_name(tj(long_names[0])) != child_name(tj(long_names[1]))
    assert builders.job_label_value(tj(long_names[0])) != builders.job_label_value(tj(long_names[1]))


def test_every_child_is_owned_by_the_job_and_labelled() -> None:
    job_resource = tj()
    children = [
        build_service_account(job_resource),
        build_role(job_resource),
        build_role_binding(job_resource),
        build_grants_secret(job_resource, StoreGrants(expires="2025-01-01T00:00:00Z")),
        build_runner_job(job_resource, SETTINGS, EGRESS),
    ]
    for child in children:
        metadata = child["metadata"]
        assert metadata["name"] == "transcribe-jfk"
        assert metadata["namespace"] == "team-a"
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": "kubescribe.io/v1alpha1",
                "kind": "TranscriptionJob",
                "name": "jfk",
                "uid": "0b6c-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert metadata["labels"] == {
            "app.kubernetes.io/name": "kubescribe",
            "app.kubernetes.io/component": "runner",
            "kubescribe.io/job": "jfk",
        }
    assert pod_selector(job_resource) == "kubescribe.io/job=jfk"


def test_role_grants_only_its_own_jobs_status() -> None:
    role = build_role(tj())
    assert role["rules"] == [
        {
            "apiGroups": ["kubescribe.io"],
            "resources": ["transcriptionjobs/status"],
            "resourceNames": ["jfk"],
            "verbs": ["patch"],
        }
    ]


def test_role_binding_binds_the_jobs_service_account_to_its_role() -> None:
    binding = build_role_binding(tj())
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "transcribe-jfk"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "transcribe-jfk", "namespace": "team-a"}]
    assert (
        build_runner_job(tj(), SETTINGS, EGRESS)["spec"]["template"]["spec"]["serviceAccountName"] == "transcribe-jfk"
    )


def test_grants_secret_holds_the_grants_and_no_store_credentials() -> None:
    grants = StoreGrants(
        expires="2025-01-01T00:00:00Z", source=Grant(url="https://store/a?X-Amz-Signature=1", uri="s3://a/b")
    )
    secret = build_grants_secret(tj(), grants)
    assert StoreGrants.model_validate_json(secret["stringData"][ENV_STORE_GRANTS]) == grants
    assert set(secret["stringData"]) == {ENV_STORE_GRANTS}
    assert secret["type"] == "Opaque"


def test_runner_gets_the_jobs_grants_and_no_store_credentials_by_default() -> None:
    assert uses_operator_store(tj())
    variables = env(build_runner_job(tj(), SETTINGS, EGRESS))
    assert variables[ENV_STORE_GRANTS] == {"secretKeyRef": {"name": "transcribe-jfk", "key": ENV_STORE_GRANTS}}
    assert not {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(variables)


def test_egress_rules_allow_the_configured_ranges_and_forbid_the_api_server_and_the_store() -> None:
    settings = SETTINGS.model_copy(update={"egress_allowed_private_ranges": [ipaddress.ip_network("10.20.0.0/16")]})
    rules = builders.egress_rules(settings, "https://10.96.0.1")
    assert rules.allowed_private_ranges == [ipaddress.ip_network("10.20.0.0/16")]
    assert rules.forbidden_endpoints == [
        Endpoint(host="10.96.0.1", port=443, name="the Kubernetes API server"),
        Endpoint(host="minio.store", port=9000, name="the operator's store"),
    ]


def test_settings_read_the_allowed_ranges_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESCRIBE_EGRESS_ALLOWED_PRIVATE_RANGES", '["10.1.2.3/32", "fd00::/8"]')
    ranges = OperatorSettings().egress_allowed_private_ranges
    assert ranges == [ipaddress.ip_network("10.1.2.3/32"), ipaddress.ip_network("fd00::/8")]
    monkeypatch.delenv("KUBESCRIBE_EGRESS_ALLOWED_PRIVATE_RANGES")
    assert OperatorSettings().egress_allowed_private_ranges == []


def test_runner_gets_the_egress_rules() -> None:
    variables = env(build_runner_job(tj(source={"url": "https://media.example/a.wav"}), SETTINGS, EGRESS))
    assert EgressRules.model_validate_json(variables[ENV_EGRESS_RULES]) == EGRESS


def test_runner_uses_the_users_secret_and_endpoint_when_the_source_names_them() -> None:
    source = {"s3": {"bucket": "audio", "key": "a.wav", "endpoint": "https://s3.example", "secretName": "mine"}}
    resource = tj(source=source)
    assert not uses_operator_store(resource)
    variables = env(build_runner_job(resource, SETTINGS, EGRESS))
    assert variables["AWS_ENDPOINT_URL"] == "https://s3.example"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert variables[key] == {"secretKeyRef": {"name": "mine", "key": key}}


def test_spec_in_the_environment_parses_back_with_the_defaults_filled_in() -> None:
    variables = env(build_runner_job(tj(), SETTINGS, EGRESS))
    spec = TranscriptionJobSpec.model_validate_json(variables[ENV_SPEC])
    assert spec.outputs.s3 is not None
    assert (spec.outputs.s3.bucket, spec.outputs.s3.prefix) == ("transcripts", "team-a/jfk/")
    assert spec.source.s3 is not None
    assert spec.source.s3.endpoint is None  # the operator's store: reached through the presigned URLs
    assert spec.model == "tiny.en"
    assert json.loads(variables[ENV_SPEC])["outputs"]["formats"] == ["json", "txt", "srt", "vtt"]
    assert variables[ENV_JOB_NAME] == "jfk"
    assert variables[ENV_JOB_NAMESPACE] == "team-a"
    assert variables[ENV_MODEL_CACHE] == "/models"


def test_spec_values_win_over_the_operators_defaults() -> None:
    resource = tj(model="base", outputs={"formats": ["srt"], "s3": {"bucket": "mine", "prefix": "x/"}})
    settings = SETTINGS.model_copy(update={"default_model": "small"})
    spec = TranscriptionJobSpec.model_validate_json(env(build_runner_job(resource, settings, EGRESS))[ENV_SPEC])
    assert spec.model == "base"
    assert spec.outputs.s3 is not None
    assert (spec.outputs.s3.bucket, spec.outputs.s3.prefix) == ("mine", "x/")
    assert spec.outputs.formats == ["srt"]
    without_model = TranscriptionJobSpec.model_validate_json(env(build_runner_job(tj(), settings, EGRESS))[ENV_SPEC])
    assert without_model.model == "small"


def test_gpu_limit_only_when_the_job_asks_for_gpus() -> None:
    gpu = container(build_runner_job(tj(resources={"gpu": 2, "cpu": "2", "memory": "4Gi"}), SETTINGS, EGRESS))[
        "resources"
    ]
    assert gpu["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert gpu["limits"]["nvidia.com/gpu"] == "2"
    cpu = container(build_runner_job(tj(resources={"gpu": 0}), SETTINGS, EGRESS))["resources"]
    assert "nvidia.com/gpu" not in json.dumps(cpu)
    assert set(cpu["limits"]) == {"memory"}
    default = container(build_runner_job(tj(), SETTINGS, EGRESS))["resources"]
    assert default["limits"]["nvidia.com/gpu"] == "1"


def test_placement_comes_from_the_spec() -> None:
    resources = {
        "gpu": 1,
        "nodeSelector": {"gpu-type": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "batch-high",
    }
    pod = build_runner_job(tj(resources=resources), SETTINGS, EGRESS)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu-type": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "batch-high"
    plain = build_runner_job(tj(), SETTINGS, EGRESS)["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "priorityClassName"} & set(plain)


def test_runner_pod_shape() -> None:
    job = build_runner_job(tj(), SETTINGS, EGRESS)
    pod = job["spec"]["template"]["spec"]
    runner = container(job)
    assert pod["restartPolicy"] == "Never"
    assert runner["name"] == "runner"
    assert runner["image"] == "registry.example/kubescribe:1.0"
    assert runner["command"] == ["python", "-m", "kubescribe.runner"]
    assert runner["terminationMessagePath"] == TERMINATION_MESSAGE_PATH
    assert runner["terminationMessagePolicy"] == "FallbackToLogsOnError"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in runner["volumeMounts"]}
    assert mounts == {"/work": "work", "/models": "model-cache", "/tmp": "tmp"}
    assert runner["workingDir"] == "/work"
    assert all(set(volumes[name]) == {"name", "emptyDir"} for name in mounts.values())
    assert job["spec"]["template"]["metadata"]["labels"]["kubescribe.io/job"] == "jfk"


def test_runner_pod_meets_the_restricted_pod_security_profile() -> None:
    pod = build_runner_job(tj(), SETTINGS, EGRESS)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(build_runner_job(tj(), SETTINGS, EGRESS))["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert all("hostPath" not in volume for volume in pod["volumes"])
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))


def test_runner_writes_only_into_its_emptydirs() -> None:
    job = build_runner_job(tj(), SETTINGS, EGRESS)
    mounted = {mount["mountPath"] for mount in container(job)["volumeMounts"]}
    variables = env(job)
    assert variables["HOME"] in mounted
    assert variables["TMPDIR"] in mounted
    assert variables["HF_HOME"].startswith(variables[ENV_MODEL_CACHE] + "/")
    assert container(job)["workingDir"] in mounted


def test_only_the_jobs_own_service_account_token_is_mounted() -> None:
    pod = build_runner_job(tj(), SETTINGS, EGRESS)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == child_name(tj())
    assert pod["automountServiceAccountToken"] is True
    assert build_service_account(tj())["automountServiceAccountToken"] is False


def test_job_retries_deadline_and_failure_policy() -> None:
    spec = build_runner_job(tj(backoffLimit=4, activeDeadlineSeconds=600), SETTINGS, EGRESS)["spec"]
    assert spec["backoffLimit"] == 4
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "Failed"
    assert "ttlSecondsAfterFinished" not in spec
    fail_job, ignore = spec["podFailurePolicy"]["rules"]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"]["containerName"] == "runner"
    assert fail_job["onExitCodes"]["operator"] == "In"
    assert fail_job["onExitCodes"]["values"] == list(NOT_RETRIED_EXIT_CODES)
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def test_a_stranded_pod_ends_failed_with_a_condition_its_job_does_not_count() -> None:
    """The Job replaces a pod once it has Failed; the condition matches the rule that ignores disruptions."""
    status = builders.stranded_pod_status("2026-05-01T12:00:00Z")["status"]
    assert status["phase"] == "Failed"
    [ignore] = [
        r
        for r in build_runner_job(tj(), SETTINGS, EGRESS)["spec"]["podFailurePolicy"]["rules"]
        if r["action"] == "Ignore"
    ]
    [condition] = status["conditions"]
    assert {"type": condition["type"], "status": condition["status"]} in ignore["onPodConditions"]


def test_a_job_handed_to_kueue_is_created_suspended_with_its_labels() -> None:
    labels = {"kueue.x-k8s.io/queue-name": "gpus", "kueue.x-k8s.io/priority-class": "high"}
    queued = build_runner_job(tj(), SETTINGS, EGRESS, labels)
    assert queued["spec"]["suspend"] is True
    assert labels.items() <= queued["metadata"]["labels"].items()
    assert queued["metadata"]["labels"]["kubescribe.io/job"] == "jfk"


def test_a_job_of_the_operators_own_queue_runs_at_once_without_kueues_labels() -> None:
    job = build_runner_job(tj(labels={"kueue.x-k8s.io/queue-name": "gpus", "team": "a"}), SETTINGS, EGRESS)
    assert job["spec"]["suspend"] is False
    assert not any(label.startswith("kueue.x-k8s.io/") or label == "team" for label in job["metadata"]["labels"])


def test_job_is_deterministic() -> None:
    assert build_runner_job(tj(), SETTINGS, EGRESS) == build_runner_job(tj(), SETTINGS, EGRESS)


def test_only_a_jobs_own_upload_and_transcripts_are_deleted_with_it() -> None:
    uploaded = {"kubescribe.io/uploaded-source": "true"}
    own = tj("tj-abc", source={"s3": {"bucket": "audio", "key": "team-a/uploads/tj-abc/audio"}})
    own["metadata"]["annotations"] = uploaded
    assert builders.owned_objects(own, SETTINGS) == {
        "transcripts": [f"team-a/tj-abc/audio.{f}" for f in ("json", "txt", "srt", "vtt")],
        "audio": ["team-a/uploads/tj-abc/audio"],
    }
    for key in ("team-b/their.wav", "team-b/uploads/tj-abc/audio", "team-a/uploads/tj-other/audio"):
        forged = tj("tj-abc", source={"s3": {"bucket": "audio", "key": key}})
        forged["metadata"]["annotations"] = uploaded
        assert "audio" not in builders.owned_objects(forged, SETTINGS), key
    unmarked = tj("tj-abc", source={"s3": {"bucket": "audio", "key": "team-a/uploads/tj-abc/audio"}})
    assert "audio" not in builders.owned_objects(unmarked, SETTINGS)


def test_nothing_outside_the_namespaces_storage_or_in_its_own_store_is_deleted_with_a_job() -> None:
    stolen = tj(source={"s3": {"bucket": "audio", "key": "team-a/talk.wav"}})
    stolen["spec"]["outputs"] = {"formats": ["txt"], "s3": {"bucket": "transcripts", "prefix": "team-b/x/"}}
    assert builders.owned_objects(stolen, SETTINGS) == {}
    own_store = {"bucket": "audio", "key": "team-a/talk.wav", "endpoint": "https://s3.example", "secretName": "mine"}
    assert builders.owned_objects(tj(source={"s3": own_store}), SETTINGS) == {}


def memory_limit(job: dict[str, Any]) -> int:
    return int(parse_quantity(container(job)["resources"]["limits"]["memory"]))


def size_limits(job: dict[str, Any]) -> dict[str, int]:
    volumes = job["spec"]["template"]["spec"]["volumes"]
    return {volume["name"]: int(parse_quantity(volume["emptyDir"]["sizeLimit"])) for volume in volumes}


def test_the_runner_gets_the_operators_limits() -> None:
    settings = OperatorSettings(
        runner_max_source_bytes=5 << 20, runner_max_duration_seconds=90, runner_download_timeout_seconds=30
    )
    limits = RunnerLimits.model_validate_json(env(build_runner_job(tj(), settings, EGRESS))[ENV_LIMITS])
    assert limits == RunnerLimits(max_source_bytes=5 << 20, max_duration_seconds=90, download_timeout_seconds=30)


def test_the_memory_limit_holds_the_longest_audio_and_the_model() -> None:
    short, long = (OperatorSettings(runner_max_duration_seconds=seconds) for seconds in (600, 4 * 3600))
    decoded_cap = 4 * 16000 * 4 * 3600  # the float32 samples of the longest audio alone
    assert memory_limit(build_runner_job(tj(), long, EGRESS)) > decoded_cap + memory_limit(
        build_runner_job(tj(), short, EGRESS)
    )
    tiny, large = (memory_limit(build_runner_job(tj(model=model), long, EGRESS)) for model in ("tiny.en", "large-v3"))
    assert large - tiny >= 3 << 30  # large-v3's weights are about 3 GB, tiny's 75 MB
    unknown = memory_limit(build_runner_job(tj(model="s3://models/approved/x/"), long, EGRESS))
    assert unknown - tiny >= long.max_model_bytes - (100 << 20)


def test_the_chart_may_set_the_memory_limit_and_a_job_may_ask_for_more() -> None:
    settings = OperatorSettings(runner_memory_limit="3Gi")
    assert container(build_runner_job(tj(), settings, EGRESS))["resources"]["limits"]["memory"] == "3Gi"
    asked = container(build_runner_job(tj(resources={"memory": "8Gi"}), settings, EGRESS))["resources"]
    assert asked["requests"]["memory"] == asked["limits"]["memory"] == "8Gi"
    less = container(build_runner_job(tj(resources={"memory": "1Gi"}), settings, EGRESS))["resources"]
    assert (less["requests"]["memory"], less["limits"]["memory"]) == ("1Gi", "3Gi")


def test_a_runner_reserves_the_charts_request_not_its_whole_limit() -> None:
    resources = container(build_runner_job(tj(), OperatorSettings(runner_memory_request="1536Mi"), EGRESS))["resources"]
    assert resources["requests"]["memory"] == "1536Mi"
    assert parse_quantity(resources["limits"]["memory"]) > 8 * parse_quantity("1536Mi")


def test_every_emptydir_is_bounded_by_what_it_holds() -> None:
    settings = OperatorSettings(runner_max_source_bytes=3 << 30, max_model_bytes=5 << 30)
    limits = size_limits(build_runner_job(tj(), settings, EGRESS))
    assert set(limits) == {"work", "model-cache", "tmp"}
    assert 3 << 30 < limits["work"] <= (3 << 30) + (1 << 30)
    assert 5 << 30 < limits["model-cache"] <= (5 << 30) + (1 << 30)
    assert 0 < limits["tmp"] <= 1 << 30
    small_cap = OperatorSettings(max_model_bytes=1 << 30)
    assert size_limits(build_runner_job(tj(model="large-v3"), small_cap, EGRESS))["model-cache"] > 3 << 30


GPU_POOL = OperatorSettings(
    runner_image="registry.example/kubescribe-runner@sha256:" + "ab" * 32,
    runner_image_pull_policy="Always",
    runner_image_pull_secrets=["registry-credentials"],
    runner_node_selector={"cloud.example/pool": "gpu-a100", "nvidia.com/gpu.present": "true"},
    runner_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    runner_runtime_class_name="nvidia",
    runner_priority_class_name="transcription",
    runner_extra_resources={"rdma/rdma_shared_device_a": "1"},
    runner_resource_requests={"cpu": "2", "ephemeral-storage": "1Gi"},
    runner_resource_limits={"cpu": "4"},
)


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def test_runner_pods_with_gpus_go_where_the_settings_place_them() -> None:
    job = build_runner_job(tj(), GPU_POOL, EGRESS)
    pod = pod_of(job)
    assert pod["nodeSelector"] == {"cloud.example/pool": "gpu-a100", "nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["priorityClassName"] == "transcription"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert container(job)["image"] == GPU_POOL.runner_image
    assert container(job)["imagePullPolicy"] == "Always"
    resources = container(job)["resources"]
    assert resources["requests"] == {"cpu": "2", "ephemeral-storage": "1Gi", "memory": "2Gi"}
    assert resources["limits"]["cpu"] == "4"
    assert resources["limits"]["rdma/rdma_shared_device_a"] == "1"
    assert resources["limits"]["nvidia.com/gpu"] == "1"


def test_a_jobs_own_placement_adds_to_the_settings_and_wins() -> None:
    own = {
        "gpu": 2,
        "cpu": "8",
        "nodeSelector": {"cloud.example/pool": "gpu-h100", "zone": "b"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Exists"},
        ],
        "priorityClassName": "urgent",
    }
    job = build_runner_job(tj(resources=own), GPU_POOL, EGRESS)
    pod = pod_of(job)
    assert pod["nodeSelector"] == {"cloud.example/pool": "gpu-h100", "nvidia.com/gpu.present": "true", "zone": "b"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"},
    ]
    assert pod["priorityClassName"] == "urgent"
    resources = container(job)["resources"]
    assert resources["requests"]["cpu"] == "8"
    assert resources["limits"]["cpu"] == "8"  # raised to the job's request, which the API server would refuse above
    assert resources["limits"]["nvidia.com/gpu"] == "2"


def test_runner_pods_without_gpus_stay_off_the_gpu_pool() -> None:
    job = build_runner_job(tj(resources={"gpu": 0}), GPU_POOL, EGRESS)
    pod = pod_of(job)
    assert not {"nodeSelector", "tolerations", "runtimeClassName"} & set(pod)
    assert pod["priorityClassName"] == "transcription"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    limits = container(job)["resources"]["limits"]
    assert set(limits) == {"cpu", "memory"}


def test_settings_read_the_runner_pods_placement_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESCRIBE_RUNNER_NODE_SELECTOR", '{"cloud.example/pool": "gpu"}')
    monkeypatch.setenv("KUBESCRIBE_RUNNER_TOLERATIONS", '[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]')
    monkeypatch.setenv("KUBESCRIBE_RUNNER_EXTRA_RESOURCES", '{"rdma/hca": "1"}')
    monkeypatch.setenv("KUBESCRIBE_RUNNER_RESOURCE_REQUESTS", '{"cpu": "500m"}')
    monkeypatch.setenv("KUBESCRIBE_RUNNER_IMAGE_PULL_SECRETS", '["registry-credentials"]')
    pod = pod_of(build_runner_job(tj(), OperatorSettings(), EGRESS))
    assert pod["nodeSelector"] == {"cloud.example/pool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["containers"][0]["resources"]["limits"]["rdma/hca"] == "1"
    assert pod["containers"][0]["resources"]["requests"]["cpu"] == "500m"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KUBESCRIBE_RUNNER_RESOURCE_REQUESTS", '{"memory": "1Gi"}'),
        ("KUBESCRIBE_RUNNER_EXTRA_RESOURCES", '{"rdma/hca": "one"}'),
        ("KUBESCRIBE_RUNNER_IMAGE_PULL_POLICY", "Sometimes"),
    ],
)
def test_settings_refuse_runner_resources_kubernetes_would_not_take(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable.removeprefix("KUBESCRIBE_").lower()):
        OperatorSettings()
