"""The bench's own local cluster, and the operator installed into it with Helm as `hack/demo.sh` does."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from kubernetes import client, config

from localcluster.cluster import ClusterState, LocalCluster, free_ports
from localcluster.registry import push_images

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "kubescribe"
RELEASE = "kubescribe"
HELM_VALUES = {
    "operator.maxRunningJobs": "1000",
    "operator.maxGpusPerNamespace": "1000",
    # The local nodes schedule by memory and CPU requests: 200 runner pods must fit where the 200 plain Jobs, which
    # request nothing, do.
    "runner.memoryRequest": "64Mi",
    "runner.resources.requests.cpu": "1m",
}


def bin_path() -> list[Path]:
    raw = os.environ.get("KUBESCRIBE_BIN_PATH") or subprocess.run(
        [REPO / "hack/build-binaries.sh", "--path"], capture_output=True, text=True, check=True
    ).stdout.replace("\n", ":")
    return [Path(p) for p in raw.split(":") if p]


def pinned_versions() -> dict[str, str]:
    lines = (REPO / "hack/versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def install_operator(
    cluster: LocalCluster, state: ClusterState, env: dict[str, str], limits: dict[str, str] = HELM_VALUES
) -> dict[str, str]:
    """The chart with the demo's settings and the queue `limits` (raised, unless given); the Helm values used."""
    run(env, "kubectl", "create", "namespace", OPERATOR_NAMESPACE)
    run(
        env,
        *("kubectl", "-n", OPERATOR_NAMESPACE, "create", "secret", "generic", "kubescribe-s3"),
        f"--from-literal=AWS_ACCESS_KEY_ID={state.minio_user}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={state.minio_password}",
    )
    # The node agent runs pods on the host's network: the operator's health and metrics ports and the gateway's port
    # are moved off 8080, 9090 and 8000, which another local cluster on this machine may hold.
    health, metrics, gateway, cache_port = free_ports(4)
    ports = {"operator.ports.health": health, "operator.ports.metrics": metrics, "gateway.port": gateway}
    values = {
        "modelCache.port": str(cache_port),
        "modelCache.url": f"http://127.0.0.1:{cache_port}",
        "s3.endpoint": cluster.s3_url(state),
        **push_images(env),
        **limits,
        **{k: str(v) for k, v in ports.items()},
    }
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    chart, local_values = str(REPO / "charts/kubescribe"), str(REPO / "localcluster/chart-values.yaml")
    run(env, "helm", "upgrade", "--install", RELEASE, chart, "-n", OPERATOR_NAMESPACE, "-f", local_values, *sets)
    deployment = f"deployment/{RELEASE}-operator"
    run(env, "kubectl", "-n", OPERATOR_NAMESPACE, "rollout", "status", deployment, "--timeout=2m")
    return values


def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


def create_namespace(api: client.ApiClient, name: str, timeout: float = 60) -> None:
    """A namespace, once its `default` ServiceAccount exists (pods that name no account need it)."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    deadline = time.monotonic() + timeout
    while not core.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace {name} got no default ServiceAccount within {timeout:.0f} s")
        time.sleep(0.5)


def delete_namespace(api: client.ApiClient, name: str, timeout: float = 300) -> bool:
    """Delete a namespace and wait until its pods are gone; whether they went in time."""
    core = client.CoreV1Api(api)
    core.delete_namespace(name, propagation_policy="Background")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not core.list_namespaced_pod(name).items:
            return True
        time.sleep(2)
    return False
