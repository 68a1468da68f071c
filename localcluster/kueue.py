"""Kueue in the local cluster: its configuration, and the objects it needs in the API (its CRDs, its RBAC bound
to its own identity, its webhook Service and webhook configurations), built from the manifests of its pinned Go
module as Kueue's own kustomization builds them (namespace `kueue-system`, names prefixed `kueue-`).

Kueue issues its own webhook certificate for `kueue-webhook-service.kueue-system.svc` into a Secret and writes the
CA into its webhook configurations and into its CRDs' conversion webhooks. It serves the certificate from files,
which in a pod are the Secret mounted by the kubelet; here the local cluster writes them (`certificate_files`). The
API server, started with aggregator routing, reaches the Service through its one endpoint: Kueue's webhook port on
the host's own address."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

MODULE = "sigs.k8s.io/kueue"
NAMESPACE = "kueue-system"
NAME_PREFIX = "kueue-"
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_CERTIFICATE = "kueue-webhook-server-cert"
INTEGRATIONS = ("batch/job",)

# The API groups whose webhooks are installed: Kueue's own kinds and those of the integrations above. The
# webhooks of disabled integrations (pods, deployments, ...) would send every such object through Kueue.
WEBHOOK_GROUPS = frozenset({"kueue.x-k8s.io", "batch"})

# The selector Kueue's kustomization gives the webhooks of its integrations.
_INTEGRATION_NAMESPACES = {
    "matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}
    ]
}
_KUEUE_SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "controller-manager", "namespace": "system"}
_BINDINGS = ("ClusterRoleBinding", "RoleBinding")
_ROLES = ("ClusterRole", "Role")


class ManifestError(RuntimeError):
    """Kueue's module source could not be found or read."""


def pinned_version(versions_env: str) -> str:
    """KUEUE_VERSION of hack/versions.env."""
    for line in versions_env.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "KUEUE_VERSION" and value.strip():
            return value.strip()
    raise ManifestError("hack/versions.env pins no KUEUE_VERSION")


def module_dir(version: str) -> Path:
    """The directory of Kueue's module source at `version` in the Go module cache, downloaded when missing."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    try:
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ManifestError(f"cannot run `go mod download {MODULE}@{version}`: {error}") from error
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {}
    if result.returncode != 0 or not info.get("Dir"):
        raise ManifestError(f"`go mod download {MODULE}@{version}` failed: {info.get('Error') or result.stderr}")
    return Path(info["Dir"])


def configuration(*, health_port: int, webhook_host: str, webhook_port: int, cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration: the batch/job integration only, for labelled Jobs only, one instance (no leader
    election), its webhook certificate managed by itself; no metrics and no visibility server."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": webhook_host, "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": WEBHOOK_CERTIFICATE,
        },
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": list(INTEGRATIONS)},
        "featureGates": {"VisibilityOnDemand": False},
    }


def api_objects(source: Path, *, user: str, webhook_address: str, webhook_port: int) -> list[dict[str, Any]]:
    """Everything Kueue needs in the API, from its module source at `source`; its RBAC is bound to `user`."""
    components = source / "config" / "components"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    return [
        namespace,
        *custom_resource_definitions(components),
        *rbac(_documents(components / "rbac"), user),
        *(_in_kueue_namespace(doc) for doc in _documents(components / "internalcert")),
        *webhooks(_documents(components / "webhook")),
        webhook_endpoints(webhook_address, webhook_port),
    ]


def custom_resource_definitions(components: Path) -> list[dict[str, Any]]:
    """Kueue's CRDs with the conversion webhooks its kustomization patches in: Kueue's certificate manager is
    only ready once it has written its CA into each of them."""
    crds = _documents(components / "crd")
    for patch in _documents(components / "crd", key="patches", entry="path"):
        conversion = patch["spec"]["conversion"]
        conversion["webhook"]["clientConfig"]["service"].update(name=WEBHOOK_SERVICE, namespace=NAMESPACE)
        (crd,) = (crd for crd in crds if crd["metadata"]["name"] == patch["metadata"]["name"])
        crd["spec"]["conversion"] = conversion
    return crds


def rbac(documents: list[dict[str, Any]], user: str) -> list[dict[str, Any]]:
    """The roles Kueue's manifests bind to Kueue's ServiceAccount, and those bindings, bound to `user` instead."""
    bindings = [
        doc for doc in documents if doc["kind"] in _BINDINGS and _KUEUE_SERVICE_ACCOUNT in doc.get("subjects", [])
    ]
    bound = {(binding["roleRef"]["kind"], binding["roleRef"]["name"]) for binding in bindings}
    roles = [doc for doc in documents if doc["kind"] in _ROLES and (doc["kind"], doc["metadata"]["name"]) in bound]
    subject = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}
    for binding in bindings:
        binding["roleRef"]["name"] = NAME_PREFIX + binding["roleRef"]["name"]
        binding["subjects"] = [subject]
    return [_in_kueue_namespace(doc) for doc in roles + bindings]


def webhooks(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The webhook Service (its endpoint is `webhook_endpoints`) and the webhook configurations, less the webhooks
    of integrations that are not enabled."""
    for configuration in (doc for doc in documents if doc["kind"].endswith("WebhookConfiguration")):
        kept = []
        for webhook in configuration["webhooks"]:
            groups = {group for rule in webhook["rules"] for group in rule["apiGroups"]}
            if not groups <= WEBHOOK_GROUPS:
                continue
            webhook["clientConfig"]["service"].update(name=WEBHOOK_SERVICE, namespace=NAMESPACE)
            if "kueue.x-k8s.io" not in groups:
                webhook["namespaceSelector"] = _INTEGRATION_NAMESPACES
            kept.append(webhook)
        configuration["webhooks"] = kept
    return [_in_kueue_namespace(doc) for doc in documents]


def webhook_endpoints(address: str, port: int) -> dict[str, Any]:
    """The EndpointSlice of the webhook Service: Kueue's webhook server on the host. The Service's port has no
    name, and the API server matches the slice's port by that name."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": WEBHOOK_SERVICE,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": WEBHOOK_SERVICE,
                "endpointslice.kubernetes.io/managed-by": "localcluster",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }


def certificate_files(secret: dict[str, Any]) -> dict[str, str]:
    """The files of Kueue's webhook certificate Secret, as its volume in Kueue's pod would hold them, in the order
    to write them (Kueue waits for `tls.crt`, then reads the key beside it); empty until Kueue has issued them."""
    data = secret.get("data") or {}
    names = ("ca.crt", "tls.key", "tls.crt")
    if not all(isinstance(data.get(name), str) for name in names):
        return {}
    try:
        return {name: base64.b64decode(data[name], validate=True).decode() for name in names}
    except ValueError:  # not base64, or not PEM text
        return {}


def _in_kueue_namespace(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` named as Kueue's kustomization names it: prefixed, and in Kueue's namespace if it is namespaced."""
    metadata = doc["metadata"]
    metadata["name"] = NAME_PREFIX + metadata["name"]
    if "namespace" in metadata:
        metadata["namespace"] = NAMESPACE
    return doc


def _documents(directory: Path, key: str = "resources", entry: str | None = None) -> list[dict[str, Any]]:
    """The documents of the files a kustomization.yaml lists under `key` (each item a path, or a mapping whose
    `entry` is the path)."""
    try:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        paths = [item[entry] if entry else item for item in kustomization.get(key, [])]
        return [doc for path in paths for doc in yaml.safe_load_all((directory / path).read_text()) if doc is not None]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise ManifestError(f"cannot read Kueue's manifests in {directory}: {error}") from error
