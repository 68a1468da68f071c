"""One local cluster (real etcd, kube-apiserver, controller-manager, scheduler, MinIO and the local node
agents) shared by every integration test of a session."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml
from kubernetes import client, config
from minio import Minio

from kubescribe.gateway.access.keys import create_key
from localcluster.cluster import LocalCluster, free_ports, host_address
from localcluster.registry import push_images
from tests.integration.leaks import LeakWatch

REPO = Path(__file__).resolve().parents[2]
LEAK_SCAN = "test_secrets_never_leak.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The scan for leaked secrets reads what every other test left behind: it runs last."""
    items.sort(key=lambda item: item.path.name == LEAK_SCAN)


def pinned_versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (REPO / "hack/versions.env").read_text().splitlines())
    return {key: value for key, value in (p for p in pairs if len(p) == 2) if not key.startswith("#")}


def bin_path() -> list[Path]:
    raw = os.environ.get("KUBESCRIBE_BIN_PATH") or subprocess.run(
        [REPO / "hack/build-binaries.sh", "--path"], capture_output=True, text=True, check=True
    ).stdout.replace("\n", ":")
    return [Path(p) for p in raw.split(":") if p]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Polls `condition` until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")


def running_pid(pod: dict[str, Any] | None) -> int | None:
    """The process of the pod's first container while it runs (the local node's containerID is kubescribe://<pid>)."""
    statuses = (pod or {}).get("status", {}).get("containerStatuses", [])
    if statuses and "running" in statuses[0]["state"]:
        return int(statuses[0]["containerID"].split("://")[1])
    return None


_CAN_I_ROW = re.compile(r"^(?P<resource>\S+)\s+\[\]\s+\[(?P<names>[^]]*)\]\s+\[(?P<verbs>[^]]*)\]\s*$")
"""A resource's row of `kubectl auth can-i --list`: Resources, Non-Resource URLs ([]), Resource Names, Verbs."""


RESTRICTED_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


class Cluster:
    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        state = local.load_state()
        assert state is not None
        self.state = state
        self.env = {**os.environ, **local.env_exports(state)}
        self.leaks = LeakWatch()
        self.leaks.secret(state.minio_user, "store user")
        self.leaks.secret(state.minio_password, "store password")

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args), input=input, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self.run("kubectl", *args, input=input, check=check)
        if args[:2] == ("create", "token") and result.returncode == 0:
            self.leaks.secret(result.stdout.strip(), f"token of {args[2]}")
        return result

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def try_get(self, *args: str) -> Any | None:
        result = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def permissions(self, account: str, namespace: str) -> set[tuple[str, str, str]]:
        """(resource, resource name or "", verb) for each thing `account` may do in `namespace`, its cluster-wide
        grants included, less what every authenticated user may (self-reviews and non-resource URLs)."""
        listing = self.kubectl("auth", "can-i", "--list", f"--as={account}", "-n", namespace).stdout
        granted = set()
        for line in listing.splitlines()[1:]:
            row = _CAN_I_ROW.match(line)
            if row is None or row["resource"].startswith("selfsubject"):
                continue
            for verb in row["verbs"].split():
                granted |= {(row["resource"], name, verb) for name in row["names"].split() or [""]}
        return granted

    def s3(self) -> Minio:
        endpoint = self.local.s3_url(self.state).removeprefix("http://")
        return Minio(endpoint, self.state.minio_user, self.state.minio_password, secure=False)

    def create_store_secret(self, namespace: str) -> None:
        """The Secret `kubescribe-s3` in `namespace`: the store's credentials, which a release of the chart reads."""
        self.kubectl(
            "create",
            "secret",
            "generic",
            "kubescribe-s3",
            "-n",
            namespace,
            f"--from-literal=AWS_ACCESS_KEY_ID={self.state.minio_user}",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={self.state.minio_password}",
        )

    @functools.cached_property
    def images(self) -> dict[str, str]:
        """The chart values that name the images `make images` built, pushed to this cluster's registry, by digest."""
        return push_images(self.env)

    def pod_template(self, script: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
        """A pod template whose one container runs `python -c script` in the operator's image (Python with the
        project's dependencies), within the `restricted` profile."""
        container = {
            "name": "main",
            "image": f"{self.images['image.repository']}@{self.images['image.digest']}",
            "command": ["python", "-c", script],
            "securityContext": RESTRICTED_CONTAINER_SECURITY,
        }
        container.update(spec.pop("container", {}))
        return {
            "metadata": {"labels": labels or {}},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": RESTRICTED_POD_SECURITY,
                "containers": [container],
                **spec,
            },
        }

    def pod(self, name: str, namespace: str, script: str, **spec: Any) -> dict[str, Any]:
        template = self.pod_template(script, **spec)
        template["metadata"].update(name=name, namespace=namespace)
        return {"apiVersion": "v1", "kind": "Pod", **template}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), bin_path())
    local.up()
    try:
        yield Cluster(local)
    finally:
        local.down()


RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
"""The label by which the API server's Pod Security admission refuses pods short of the `restricted` profile."""


def create_restricted_namespace(cluster: Cluster, name: str) -> None:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, RESTRICTED)


@contextlib.contextmanager
def scratch_namespace(cluster: Cluster, prefix: str = "t") -> Iterator[str]:
    """A new namespace `<prefix>-<random>`, where only pods of the `restricted` profile are admitted; its Events,
    job statuses and secrets are kept for the leak scan before it is deleted."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_restricted_namespace(cluster, name)
    # The ServiceAccount controller creates `default` shortly after the namespace; pods need it.
    wait_for(lambda: cluster.try_get("serviceaccount", "default", "-n", name), 30, "the default ServiceAccount")
    yield name
    cluster.leaks.record_namespace(cluster, name)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of its own for the test."""
    with scratch_namespace(cluster) as name:
        yield name


CRD_TEMPLATE = "templates/transcriptionjob-crd.yaml"


def helm_owned(manifest: dict[str, Any], release: str, namespace: str) -> dict[str, Any]:
    """`manifest` with the labels and annotations by which Helm knows an object as the release's own."""
    metadata = manifest["metadata"]
    metadata.setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
    metadata.setdefault("annotations", {}).update(
        {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
    )
    return manifest


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> str:
    """The TranscriptionJob CRD, established, before any operator runs: the chart's template, applied as the chart's
    release `kubescribe` applies it (server-side, Helm's field manager, the release's ownership), which then adopts
    it as its own."""
    rendered = cluster.run(
        "helm",
        "template",
        Kubescribe.release,
        str(REPO / "charts/kubescribe"),
        "-n",
        Kubescribe.namespace,
        "--show-only",
        CRD_TEMPLATE,
    ).stdout
    manifest = helm_owned(yaml.safe_load(rendered), Kubescribe.release, Kubescribe.namespace)
    cluster.kubectl("apply", "--server-side", "--field-manager=helm", "-f", "-", input=json.dumps(manifest))
    cluster.kubectl("wait", "--for=condition=Established", "crd/transcriptionjobs.kubescribe.io", "--timeout=60s")
    return "transcriptionjobs.kubescribe.io"


class Kubescribe:
    """The operator installed with its Helm chart into the shared cluster, and what tests do with it."""

    namespace = "kubescribe"
    release = "kubescribe"
    grant_grace_seconds = 5
    max_source_bytes = 32 << 20
    max_duration_seconds = 600
    """The runner's limits: far above every test's audio, small enough to pass cheaply."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.s3 = cluster.s3()
        # The local node runs pods on the host's network: ports of their own.
        ports = free_ports(5)
        self.health_port, self.metrics_port, self.gateway_port, self.gateway_metrics_port, self.model_cache_port = ports
        self.host_address = host_address()
        self.values = {
            "s3.endpoint": cluster.local.s3_url(cluster.state),
            # Test servers for source URLs and webhooks listen on the host's address, which may be a private one.
            "egress.allowedPrivateRanges": f"{{{self.host_address}/32}}",
            "operator.ports.health": str(self.health_port),
            "operator.ports.metrics": str(self.metrics_port),
            "gateway.port": str(self.gateway_port),
            "gateway.metricsPort": str(self.gateway_metrics_port),
            "modelCache.port": str(self.model_cache_port),
            "modelCache.url": self.model_cache_url,
            # Every namespace may read models from s3://models/ and use s3://scratch/, a bucket nobody creates.
            "storage.grants[0].name": "models",
            "storage.grants[0].location": "s3://models/",
            "storage.grants[1].name": "scratch",
            "storage.grants[1].location": "s3://scratch/",
            "storage.grants[1].access": "readwrite",
            "operator.grantGraceSeconds": str(self.grant_grace_seconds),
            "runner.maxSourceBytes": str(self.max_source_bytes),
            "runner.maxDurationSeconds": str(self.max_duration_seconds),
            **cluster.images,
        }
        """The chart values of every install besides localcluster/chart-values.yaml; `install` may override some for
        one install."""

    def install(self, **overrides: str) -> None:
        settings = {**self.values, **overrides}
        self.cluster.run(
            "helm",
            "upgrade",
            "--install",
            self.release,
            str(REPO / "charts/kubescribe"),
            "-n",
            self.namespace,
            "-f",
            str(REPO / "localcluster/chart-values.yaml"),
            *(arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")),
            "--wait",
            "--timeout",
            "3m",
            # A failed install leaves the last good release in place for the tests after it.
            "--rollback-on-failure",
            timeout=300,
        )

    def worker_pods(self, pool: str) -> list[dict[str, Any]]:
        """The pods of a runner pool's workers."""
        pods: list[dict[str, Any]] = self.cluster.get("pods", "-n", self.namespace, "-l", f"kubescribe.io/pool={pool}")[
            "items"
        ]
        return pods

    def ready_workers(self, pool: str) -> int:
        """The ready replicas of a runner pool's workers' Deployment."""
        deployment = self.cluster.try_get("deployment", f"{pool}-workers", "-n", self.namespace) or {}
        ready: int = deployment.get("status", {}).get("readyReplicas") or 0
        return ready

    @property
    def model_cache_url(self) -> str:
        return f"http://127.0.0.1:{self.model_cache_port}"

    def component_pid(self, component: str) -> int:
        """The process of the one running pod of the operator or the gateway."""
        selector = f"app.kubernetes.io/component={component}"
        pids = [running_pid(p) for p in self.cluster.get("pods", "-n", self.namespace, "-l", selector)["items"]]
        running = [pid for pid in pids if pid is not None]
        assert len(running) == 1, f"expected one running {component} pod, found {len(running)}"
        return running[0]

    def upload(self, bucket: str, key: str, path: Path) -> None:
        if not self.s3.bucket_exists(bucket):
            self.s3.make_bucket(bucket)
        self.s3.fput_object(bucket, key, str(path))

    def submit(self, namespace: str, name: str, **spec: Any) -> None:
        self.cluster.apply(
            {
                "apiVersion": "kubescribe.io/v1alpha1",
                "kind": "TranscriptionJob",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"resources": {"gpu": 0}, **spec},
            }
        )

    def submit_audio(self, namespace: str, name: str, wav: Path, **spec: Any) -> None:
        """Uploads `wav` as s3://audio/<namespace>/<name>.wav and submits a job of that name to transcribe it."""
        key = f"{namespace}/{name}.wav"
        self.upload("audio", key, wav)
        self.submit(namespace, name, source={"s3": {"bucket": "audio", "key": key}}, **spec)

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.cluster.try_get("tj", name, "-n", namespace)
        return found

    def wait_finished(self, namespace: str, name: str, timeout: float = 180) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            found = self.job(namespace, name)
            phase = (found or {}).get("status", {}).get("phase")
            return found if phase in ("Succeeded", "Failed", "Cancelled") else None

        result: dict[str, Any] = wait_for(finished, timeout, f"{namespace}/{name} to finish")
        return result

    def warnings(self, namespace: str, name: str) -> dict[str, str]:
        """The Warning Events of job `name`, message by reason."""
        selector = f"involvedObject.kind=TranscriptionJob,involvedObject.name={name},type=Warning"
        events = self.cluster.get("events", "-n", namespace, "--field-selector", selector)["items"]
        return {event["reason"]: event["message"] for event in events}

    def runner_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = self.cluster.get("pods", "-n", namespace, "-l", f"kubescribe.io/job={name}")[
            "items"
        ]
        return pods

    def read(self, uri: str) -> str:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return str(self.s3.get_object(bucket, key).read().decode())

    def exists(self, uri: str) -> bool:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return any(True for _ in self.s3.list_objects(bucket, prefix=key))


@pytest.fixture(scope="session")
def kubescribe(cluster: Cluster, crd: str) -> Kubescribe:
    """The operator, installed by Helm from the project's images and running as a pod with its chart's RBAC."""
    kubescribe = Kubescribe(cluster)
    create_restricted_namespace(cluster, kubescribe.namespace)
    cluster.create_store_secret(kubescribe.namespace)
    for bucket in ("audio", "transcripts"):
        kubescribe.s3.make_bucket(bucket)
    kubescribe.install()
    return kubescribe


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


class Gateway:
    """The REST gateway of the installed chart, and API keys of its test namespaces."""

    max_upload_bytes = 64 << 20
    max_queued_jobs = 3
    rate_per_second, rate_burst = 20, 40
    failed_auth_per_second, failed_auth_burst = 5, 10
    max_uploads, max_event_streams, max_waits = 2, 2, 2
    max_batch_files = 4

    def __init__(self, kubescribe: Kubescribe) -> None:
        self.kubescribe = kubescribe
        self.url = f"http://127.0.0.1:{kubescribe.gateway_port}"
        self.metrics_url = f"http://127.0.0.1:{kubescribe.gateway_metrics_port}/metrics"
        self.keys: dict[str, str] = {}

    values: ClassVar[dict[str, str]] = {
        "gateway.maxUploadBytes": str(max_upload_bytes),
        "gateway.maxQueuedJobsPerNamespace": str(max_queued_jobs),
        "gateway.rateLimit.perSecond": str(rate_per_second),
        "gateway.rateLimit.burst": str(rate_burst),
        "gateway.failedAuthLimit.perSecond": str(failed_auth_per_second),
        "gateway.failedAuthLimit.burst": str(failed_auth_burst),
        "gateway.concurrency.uploads": str(max_uploads),
        "gateway.concurrency.eventStreams": str(max_event_streams),
        "gateway.concurrency.waits": str(max_waits),
        "gateway.maxBatchFiles": str(max_batch_files),
        "gateway.jobGpus": "0",
        "gateway.openaiWaitSeconds": "180",
    }

    def install(self, **overrides: str) -> None:
        """The chart again, with `overrides` of the values; returns once the gateway of this install, alone,
        answers (a changed gateway is rolled out: the old one runs until the new one starts)."""
        self.kubescribe.install(**overrides)
        selector = "app.kubernetes.io/component=gateway"

        def ready() -> bool:
            pods = self.kubescribe.cluster.get("pods", "-n", self.kubescribe.namespace, "-l", selector)["items"]
            if len(pods) != 1 or pods[0]["metadata"].get("deletionTimestamp"):
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(ready, 120, "the gateway to be ready")

    def accepts(self, key: str) -> bool:
        return httpx.get(f"{self.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    def log_of(self, response: httpx.Response) -> str:
        """The gateway's log lines about a request (by its x-request-id): what a failed assertion shows of an
        internal error."""
        request_id = response.headers.get("x-request-id", "")
        selector = "app.kubernetes.io/component=gateway"
        logs = self.kubescribe.cluster.kubectl(
            "logs", "-n", self.kubescribe.namespace, "-l", selector, "--tail=-1", check=False
        ).stdout
        return "\n".join(line for line in logs.splitlines() if request_id and request_id in line)

    def create_key(self, namespace: str, name: str) -> str:
        api = client.CoreV1Api(config.new_client_from_config(str(self.kubescribe.cluster.local.admin_kubeconfig)))
        key = create_key(api, self.kubescribe.namespace, "kubescribe-api-keys", namespace, name)
        self.kubescribe.cluster.leaks.secret(key, f"API key {namespace}/{name}")
        return key


@pytest.fixture(scope="session")
def gateway(kubescribe: Kubescribe, cluster: Cluster) -> Gateway:
    """The gateway on a free port, with keys for the namespaces gw-a and gw-b (and gw-c for the limits)."""
    gateway = Gateway(kubescribe)
    kubescribe.values.update(gateway.values)
    gateway.install()
    for namespace in ("gw-a", "gw-b", "gw-c"):
        create_restricted_namespace(cluster, namespace)
        gateway.keys[namespace] = gateway.create_key(namespace, "tester")
    for key in gateway.keys.values():
        # The gateway learns of new keys through a watch of their Secret, a moment after they are made.
        wait_for(functools.partial(gateway.accepts, key), 30, "the gateway to accept a new key")
    return gateway
