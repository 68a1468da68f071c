"""The chart as `helm template` renders it, with the pinned helm binary."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
PRIVATE = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
]
RUNNER = {"app.kubernetes.io/name": "kubescribe", "app.kubernetes.io/component": "runner"}


def helm() -> str:
    paths = subprocess.run(
        [REPO / "hack/build-binaries.sh", "--path"], capture_output=True, text=True, check=True
    ).stdout.split()
    found = shutil.which("helm", path=":".join(paths))
    assert found is not None, "no pinned helm binary: `make binaries` builds it"
    return found


def render(
    *settings: str, check: bool = True, values: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """`values`, if any, is a values file (read from stdin), for strings `--set` would parse."""
    command = [helm(), "template", "kubescribe", str(REPO / "charts/kubescribe"), "-n", "kubescribe"]
    command += [arg for setting in settings for arg in ("--set", setting)]
    command += ["--values", "-"] if values is not None else []
    stdin = json.dumps(values) if values is not None else None
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=check)


def objects(*settings: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(render(*settings, values=values).stdout) if document]


def of_kind(kind: str, *settings: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [document for document in objects(*settings, values=values) if document["kind"] == kind]


API_SERVER = "networkPolicy.apiServer.cidrs={10.0.0.5/32}"


def test_no_namespace_named_no_networkpolicy_nor_namespace() -> None:
    assert of_kind("NetworkPolicy") == []
    assert of_kind("Namespace") == []


def test_each_known_tenant_namespace_gets_the_runner_networkpolicy() -> None:
    policies = of_kind(
        "NetworkPolicy", "tenantNamespaces={team-a,team-b}", "operator.namespaces={team-b,team-c}", API_SERVER
    )
    assert [policy["metadata"]["namespace"] for policy in policies] == ["team-a", "team-b", "team-c"]
    for policy in policies:
        assert policy["spec"]["podSelector"] == {"matchLabels": RUNNER}
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert policy["spec"]["ingress"] == []


def test_runners_reach_only_dns_the_api_server_the_store_and_public_addresses() -> None:
    [policy] = of_kind(
        "NetworkPolicy",
        "tenantNamespaces={team-a}",
        API_SERVER,
        "networkPolicy.store.cidrs={10.1.2.0/24}",
        "egress.allowedPrivateRanges={192.168.7.0/24}",
    )
    dns, api_server, store, public = policy["spec"]["egress"]
    assert dns == {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    assert api_server == {
        "to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
    }
    assert store == {"to": [{"ipBlock": {"cidr": "10.1.2.0/24"}}], "ports": [{"protocol": "TCP", "port": 9000}]}
    assert public == {
        "to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}},
            {"ipBlock": {"cidr": "::/0", "except": ["::1/128", "fc00::/7", "fe80::/10"]}},
            {"ipBlock": {"cidr": "192.168.7.0/24"}},
        ]
    }


def test_a_public_store_needs_no_rule_of_its_own() -> None:
    [policy] = of_kind("NetworkPolicy", "tenantNamespaces={team-a}", API_SERVER)
    assert len(policy["spec"]["egress"]) == 3


def test_the_api_servers_addresses_are_required_where_a_policy_is_rendered() -> None:
    result = render("tenantNamespaces={team-a}", check=False)
    assert result.returncode != 0
    assert "networkPolicy.apiServer.cidrs" in result.stderr
    assert render("tenantNamespaces={team-a}", "networkPolicy.enabled=false").returncode == 0


def test_tenant_namespaces_enforce_the_restricted_profile_and_outlive_the_release() -> None:
    [namespace] = of_kind("Namespace", "tenantNamespaces={team-a}", API_SERVER)
    assert namespace["metadata"]["name"] == "team-a"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_operator_namespaces_bind_its_powers_there_and_nowhere_else() -> None:
    settings = ("operator.namespaces={team-a,team-b}", API_SERVER)
    bindings = of_kind("RoleBinding", *settings)
    operator = [binding for binding in bindings if binding["metadata"]["name"] == "kubescribe-operator"]
    assert [binding["metadata"]["namespace"] for binding in operator] == ["team-a", "team-b"]
    assert all(binding["roleRef"]["kind"] == "ClusterRole" for binding in operator)
    assert "kubescribe-operator" not in {
        binding["metadata"]["name"] for binding in of_kind("ClusterRoleBinding", *settings)
    }
    [deployment] = [d for d in of_kind("Deployment", *settings) if d["metadata"]["name"] == "kubescribe-operator"]
    env = {item["name"]: item.get("value") for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["KUBESCRIBE_NAMESPACES"]) == ["team-a", "team-b"]


def test_by_default_the_operator_is_bound_cluster_wide() -> None:
    assert "kubescribe-operator" in {binding["metadata"]["name"] for binding in of_kind("ClusterRoleBinding")}
    assert all(binding["metadata"]["name"] != "kubescribe-operator" for binding in of_kind("RoleBinding"))


def test_deployments_meet_the_restricted_profile() -> None:
    deployments = of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"kubescribe-operator", "kubescribe-gateway"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert pod["automountServiceAccountToken"] is True
        [container] = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        }
        assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["HOME"] == env["TMPDIR"] == "/tmp"
    for account in of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_the_runners_limits_reach_the_operator() -> None:
    settings = (
        "runner.maxSourceBytes=5368709120",
        "runner.maxDurationSeconds=7200",
        "runner.memoryLimit=24Gi",
        "runner.memoryRequest=3Gi",
    )
    [operator] = [d for d in of_kind("Deployment", *settings) if d["metadata"]["name"] == "kubescribe-operator"]
    [container] = operator["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["KUBESCRIBE_RUNNER_MAX_SOURCE_BYTES"] == "5368709120"
    assert env["KUBESCRIBE_RUNNER_MAX_DURATION_SECONDS"] == "7200"
    assert env["KUBESCRIBE_RUNNER_DOWNLOAD_TIMEOUT_SECONDS"] == "3600"
    assert env["KUBESCRIBE_RUNNER_MEMORY_LIMIT"] == "24Gi"
    assert env["KUBESCRIBE_RUNNER_MEMORY_REQUEST"] == "3Gi"


def test_the_storage_policy_holds_its_values_as_literals_of_exactly_those_strings() -> None:
    odd = 's3://archive/it\'s "quoted", back\\slashed, #1: été <&> ${x}/'
    values = {
        "storage": {
            "buckets": ["audio", "team's media"],
            "grants": [
                {"name": "odd", "location": odd, "access": "readwrite", "namespaces": ["team-a", "team-b"]},
                {"name": "models", "location": "s3://models/"},
            ],
        },
        "models": {"allowed": ["tiny.en", 'org/model"v2"', "s3://models/approved/"]},
    }
    [policy] = of_kind("ValidatingAdmissionPolicy", values=values)
    assert "paramKind" not in policy["spec"]
    # JSON's escapes are CEL's: the JSON text of each value is a CEL literal of the same strings.
    variables = {variable["name"]: variable["expression"] for variable in policy["spec"]["variables"]}
    assert json.loads(variables["buckets"]) == ["audio", "team's media"]
    assert json.loads(variables["models"]) == ["tiny.en", 'org/model"v2"', "s3://models/approved/"]
    assert json.loads(variables["grants"]) == [
        {"access": "readwrite", "location": odd, "namespaces": "team-a,team-b"},
        {"access": "read", "location": "s3://models/", "namespaces": "*"},
    ]
    [binding] = of_kind("ValidatingAdmissionPolicyBinding", values=values)
    assert binding["spec"] == {"policyName": "kubescribe-storage", "validationActions": ["Deny"]}
    assert of_kind("ConfigMap", values=values) == []


def test_a_grant_outside_a_bucket_directory_is_refused_at_render() -> None:
    grants = [{"name": "loose", "location": "s3://archive/file.wav"}]
    result = render(values={"storage": {"grants": grants}}, check=False)
    assert result.returncode != 0
    assert "storage.grants loose: the location is s3://bucket/ or s3://bucket/prefix/, not s3://archive/file.wav" in (
        result.stderr
    )


def test_the_batch_limit_reaches_the_gateway() -> None:
    for settings, value in (((), "1000"), (("gateway.maxBatchFiles=20",), "20")):
        [gateway] = [d for d in of_kind("Deployment", *settings) if d["metadata"]["name"] == "kubescribe-gateway"]
        [container] = gateway["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["KUBESCRIBE_GATEWAY_MAX_BATCH_FILES"] == value


def uninstall_hook(*settings: str) -> list[dict[str, Any]]:
    return [o for o in objects(*settings) if o["metadata"]["name"] == "kubescribe-uninstall"]


def test_the_uninstall_hook_runs_after_the_release_is_gone_and_is_deleted_once_it_succeeded() -> None:
    hook = uninstall_hook()
    assert {o["kind"] for o in hook} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Job",
    }
    for item in hook:
        assert item["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
        assert item["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    [job] = [o for o in hook if o["kind"] == "Job"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["python", "-m", "kubescribe.operator.uninstall"]
    assert (
        "--operator-selector=app.kubernetes.io/instance=kubescribe,app.kubernetes.io/component=operator"
        in (container["command"])
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_uninstall_hook_acts_where_the_operator_did() -> None:
    hook = uninstall_hook("operator.namespaces={team-a,team-b}", API_SERVER)
    bindings = [(o["kind"], o["metadata"].get("namespace"), o["roleRef"]["kind"]) for o in hook if "roleRef" in o]
    assert sorted(bindings, key=str) == sorted(
        [
            ("RoleBinding", "team-a", "ClusterRole"),
            ("RoleBinding", "team-b", "ClusterRole"),
            ("RoleBinding", None, "Role"),
        ],
        key=str,
    )
    [job] = [o for o in hook if o["kind"] == "Job"]
    env = {item["name"]: item.get("value") for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["KUBESCRIBE_NAMESPACES"]) == ["team-a", "team-b"]


def test_the_model_cache_is_off_unless_asked_for() -> None:
    assert of_kind("DaemonSet") == []
    [operator] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "kubescribe-operator"]
    env = {item["name"] for item in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KUBESCRIBE_NODE_MODEL_CACHE" not in env


def test_the_model_cache_runs_one_restricted_pod_per_node_that_runners_of_that_node_reach() -> None:
    settings = ("modelCache.enabled=true", "tenantNamespaces={team-a}", API_SERVER)
    [cache] = of_kind("DaemonSet", *settings)
    pod = cache["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "cache", "emptyDir": {"sizeLimit": 2 * 21474836480}} in pod["volumes"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["KUBESCRIBE_MODEL_CACHE_STORE_ENDPOINT"] == "http://minio.storage:9000"  # s3.endpoint
    assert env["KUBESCRIBE_MODEL_CACHE_MAX_BYTES"] == "21474836480"
    [service] = [s for s in of_kind("Service", *settings) if s["metadata"]["name"] == "kubescribe-model-cache"]
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    [operator] = [d for d in of_kind("Deployment", *settings) if d["metadata"]["name"] == "kubescribe-operator"]
    operator_env = {
        item["name"]: item.get("value") for item in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert operator_env["KUBESCRIBE_NODE_MODEL_CACHE"] == "http://kubescribe-model-cache.kubescribe.svc:8480"
    [policy] = of_kind("NetworkPolicy", *settings)
    assert {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubescribe"}},
                "podSelector": {"matchLabels": cache["spec"]["selector"]["matchLabels"]},
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8480}],
    } in policy["spec"]["egress"]


def test_the_model_cache_keeps_its_files_in_the_volume_it_is_given() -> None:
    volume = {"hostPath": {"path": "/var/cache/kubescribe", "type": "DirectoryOrCreate"}}
    [cache] = of_kind("DaemonSet", values={"modelCache": {"enabled": True, "volume": volume}})
    assert {"name": "cache", **volume} in cache["spec"]["template"]["spec"]["volumes"]
