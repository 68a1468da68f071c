import base64
from pathlib import Path

import pytest
import yaml

from localcluster.kueue import (
    NAMESPACE,
    WEBHOOK_SERVICE,
    ManifestError,
    certificate_files,
    configuration,
    custom_resource_definitions,
    pinned_version,
    rbac,
    webhook_endpoints,
    webhooks,
)

KUEUE_ACCOUNT = {"kind": "ServiceAccount", "name": "controller-manager", "namespace": "system"}


def test_the_pinned_version_is_read_from_versions_env():
    assert pinned_version("# comment\nETCD_VERSION=v3\nKUEUE_VERSION=v0.18.2\nKUEUE_COMMIT=abc\n") == "v0.18.2"
    with pytest.raises(ManifestError, match="KUEUE_VERSION"):
        pinned_version("KUEUE_VERSION=\n")


def test_the_configuration_enables_only_jobs_with_a_queue_name_and_no_leader_election(tmp_path: Path):
    config = configuration(health_port=8081, webhook_host="10.0.0.5", webhook_port=9443, cert_dir=tmp_path)
    assert config["integrations"]["frameworks"] == ["batch/job"]
    assert config["manageJobsWithoutQueueName"] is False
    assert config["leaderElection"]["leaderElect"] is False
    assert config["webhook"] == {"host": "10.0.0.5", "port": 9443, "certDir": str(tmp_path)}
    assert config["health"]["healthProbeBindAddress"] == "127.0.0.1:8081"
    assert config["internalCertManagement"]["webhookServiceName"] == WEBHOOK_SERVICE


def role(kind, name, namespace=None):
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": metadata, "rules": [{"apiGroups": [""], "verbs": ["get"]}]}


def binding(kind, name, role_kind, role_name, subject, namespace=None):
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"kind": role_kind, "name": role_name},
        "subjects": [subject],
    }


def test_rbac_is_what_kueues_account_is_bound_to_bound_to_the_user_instead():
    documents = [
        role("ClusterRole", "manager-role"),
        role("Role", "manager-secrets-role", "system"),
        role("ClusterRole", "batch-user-role"),  # for people, bound to nobody by Kueue
        binding("ClusterRoleBinding", "manager-rolebinding", "ClusterRole", "manager-role", KUEUE_ACCOUNT),
        binding("RoleBinding", "manager-secrets-rolebinding", "Role", "manager-secrets-role", KUEUE_ACCOUNT, "system"),
        binding("ClusterRoleBinding", "other", "ClusterRole", "batch-user-role", {"kind": "User", "name": "x"}),
    ]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rbac(documents, "kueue-user")}
    assert set(objects) == {
        ("ClusterRole", "kueue-manager-role"),
        ("Role", "kueue-manager-secrets-role"),
        ("ClusterRoleBinding", "kueue-manager-rolebinding"),
        ("RoleBinding", "kueue-manager-secrets-rolebinding"),
    }
    secrets_binding = objects["RoleBinding", "kueue-manager-secrets-rolebinding"]
    assert secrets_binding["metadata"]["namespace"] == NAMESPACE
    assert secrets_binding["roleRef"]["name"] == "kueue-manager-secrets-role"
    assert secrets_binding["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "kueue-user"}
    ]
    assert objects["Role", "kueue-manager-secrets-role"]["metadata"]["namespace"] == NAMESPACE
    assert "namespace" not in objects["ClusterRole", "kueue-manager-role"]["metadata"]


def hook(name, group, resource):
    service = {"name": "webhook-service", "namespace": "system", "path": f"/{name}"}
    rules = [{"apiGroups": [group], "resources": [resource], "operations": ["CREATE"]}]
    return {"name": name, "clientConfig": {"service": service}, "rules": rules}


def test_webhooks_of_disabled_integrations_are_left_out_and_the_rest_call_kueues_service():
    documents = [
        {
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "mutating-webhook-configuration"},
            "webhooks": [
                hook("mjob.kb.io", "batch", "jobs"),
                hook("mpod.kb.io", "", "pods"),
                hook("mdeployment.kb.io", "apps", "deployments"),
                hook("mworkload.kb.io", "kueue.x-k8s.io", "workloads"),
            ],
        },
        {"kind": "Service", "metadata": {"name": "webhook-service", "namespace": "system"}, "spec": {}},
    ]
    configuration_, service = webhooks(documents)
    assert configuration_["metadata"]["name"] == "kueue-mutating-webhook-configuration"
    assert [w["name"] for w in configuration_["webhooks"]] == ["mjob.kb.io", "mworkload.kb.io"]
    job, workload = configuration_["webhooks"]
    assert job["clientConfig"]["service"] == {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE, "path": "/mjob.kb.io"}
    excluded = job["namespaceSelector"]["matchExpressions"][0]["values"]
    assert set(excluded) == {"kube-system", NAMESPACE}
    assert "namespaceSelector" not in workload
    assert service["metadata"] == {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE}


def test_the_webhook_endpoint_names_the_services_unnamed_port():
    endpoints = webhook_endpoints("10.0.0.5", 9443)
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == WEBHOOK_SERVICE
    assert endpoints["ports"] == [{"name": "", "port": 9443, "protocol": "TCP"}]
    assert endpoints["endpoints"][0]["addresses"] == ["10.0.0.5"]


def test_crds_get_the_conversion_webhooks_their_kustomization_patches_in(tmp_path: Path):
    crd = {"kind": "CustomResourceDefinition", "metadata": {"name": "workloads.kueue.x-k8s.io"}, "spec": {}}
    plain = {"kind": "CustomResourceDefinition", "metadata": {"name": "topologies.kueue.x-k8s.io"}, "spec": {}}
    conversion = {
        "strategy": "Webhook",
        "webhook": {
            "clientConfig": {"service": {"name": "webhook-service", "namespace": "system", "path": "/convert"}}
        },
    }
    patch = {"kind": "CustomResourceDefinition", "metadata": crd["metadata"], "spec": {"conversion": conversion}}
    crds = tmp_path / "crd"
    (crds / "bases").mkdir(parents=True)
    (crds / "patches").mkdir()
    (crds / "bases/workloads.yaml").write_text(yaml.safe_dump(crd))
    (crds / "bases/topologies.yaml").write_text(yaml.safe_dump(plain))
    (crds / "patches/webhook_in_workloads.yaml").write_text(yaml.safe_dump(patch))
    kustomization = {
        "resources": ["bases/workloads.yaml", "bases/topologies.yaml"],
        "patches": [{"path": "patches/webhook_in_workloads.yaml"}],
    }
    (crds / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))

    workloads, topologies = custom_resource_definitions(tmp_path)
    service = workloads["spec"]["conversion"]["webhook"]["clientConfig"]["service"]
    assert service == {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE, "path": "/convert"}
    assert topologies["spec"] == {}


def test_unreadable_manifests_are_a_manifest_error(tmp_path: Path):
    with pytest.raises(ManifestError, match="Kueue's manifests"):
        custom_resource_definitions(tmp_path)


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_certificate_files_come_from_a_filled_secret_with_the_certificate_last():
    secret = {"data": {"tls.crt": encoded("CERT"), "tls.key": encoded("KEY"), "ca.crt": encoded("CA")}}
    files = certificate_files(secret)
    assert files == {"ca.crt": "CA", "tls.key": "KEY", "tls.crt": "CERT"}
    assert list(files)[-1] == "tls.crt"


@pytest.mark.parametrize(
    "secret",
    [
        {},
        {"data": None},
        {"data": {"tls.crt": encoded("CERT")}},
        {"data": {"tls.crt": "not base64!", "tls.key": encoded("KEY"), "ca.crt": encoded("CA")}},
        {"data": {"tls.crt": encoded("CERT"), "tls.key": 5, "ca.crt": encoded("CA")}},
    ],
)
def test_no_certificate_files_until_the_secret_holds_them_all(secret):
    assert certificate_files(secret) == {}
