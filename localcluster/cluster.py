"""The local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, Kueue, MinIO, an image
registry and the local node agents, each a process on loopback, with their state under one directory."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from localcluster import kueue, pki, processes, registry
from localcluster.kubeconfig import kubeconfig, write_kubeconfig, write_private
from localcluster.nodeagent.environment import NODE_VARIABLE

NODES = ("kubescribe-node-1", "kubescribe-node-2")
GPUS_PER_NODE = 2
SERVICE_CIDR = "10.96.0.0/16"
REPO = Path(__file__).resolve().parents[1]
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"

CONTROLLERS = (
    "garbage-collector-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "resourcequota-controller",
)


NODE_AGENT_PREFIX = "node-agent-"


@dataclass(frozen=True)
class Component:
    """How a component of the cluster is started, kept so that it can be started again after a fault."""

    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str]
    timeout: float


class ClusterError(RuntimeError):
    """A component did not start; the message names it and the log to read."""


@dataclass
class ClusterState:
    """What `up` chose and `down` and the tools need later; saved as JSON beside the data."""

    cluster_id: str
    ports: dict[str, int]
    minio_user: str
    minio_password: str
    pids: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    [port] = free_ports(1)
    return port


def free_ports(count: int) -> list[int]:
    """`count` different loopback ports that are free now: each held until all are chosen, since a port let go may be
    the next one the kernel hands out."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def host_address() -> str:
    """The host's own address on its network, not loopback: what may stand in a Service's endpoints, and where
    servers listen for pods to reach them (pods of the local node run on the host's network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route's source address
        address: str = probe.getsockname()[0]
    return address


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class LocalCluster:
    def __init__(self, root: Path, bin_path: list[Path]) -> None:
        self.root = root.resolve()
        self.bin_path = bin_path
        self.pki_dir = self.root / "pki"
        self.logs_dir = self.root / "logs"
        self.state_file = self.root / "cluster.json"
        self.env_file = self.root / "env"
        self.admin_kubeconfig = self.root / "kubeconfig"
        self._components: dict[str, Component] = {}

    # -- public ------------------------------------------------------------------------------------

    def up(self) -> bool:
        """Starts the cluster; returns False, changing nothing, when it is already up."""
        state = self.load_state()
        if state and self.is_running(state):
            return False
        if state:
            self.down()
        state = state or self._new_state()
        self._keep_or_replace_ports(state)
        self.root.mkdir(parents=True, exist_ok=True)
        self._save(state)
        try:
            self._start_all(state)
        except ClusterError:
            self.down()
            raise
        self._write_env(state)
        return True

    def down(self) -> None:
        """Stops every process the cluster started, and any process those started."""
        state = self.load_state()
        if state is None:
            return
        # Node agents first, so that they stop their pods as a kubelet would.
        processes.terminate([pid for name, pid in state.pids.items() if name.startswith(NODE_AGENT_PREFIX)], 15)
        marked = processes.marked_processes({processes.MARKER_VARIABLE: state.cluster_id})
        processes.terminate({*state.pids.values(), *marked}, grace_seconds=10)
        state.pids = {}
        self._save(state)

    def stop_component(self, name: str, *, kill: bool = False) -> None:
        """Stops one component of a cluster this object started: SIGKILL when `kill` (a crash), else SIGTERM with
        a grace period. A node agent's pods go with it when it is killed, as they would with a failed machine."""
        state = self._started_state(name)
        pid = state.pids.pop(name)
        if kill:
            doomed = [pid]
            if name.startswith(NODE_AGENT_PREFIX):
                node = name.removeprefix(NODE_AGENT_PREFIX)
                doomed += processes.marked_processes({NODE_VARIABLE: node, processes.MARKER_VARIABLE: state.cluster_id})
            processes.kill(doomed)
        else:
            processes.terminate([pid], grace_seconds=15)
        self._save(state)

    def start_component(self, name: str) -> None:
        """Starts a stopped component again, as it was first started, and waits until it is ready."""
        self._launch(self._started_state(name), name)

    def _started_state(self, name: str) -> ClusterState:
        state = self.load_state()
        if state is None or name not in self._components:
            raise ClusterError(f"{name} is not a component this cluster object started")
        return state

    def load_state(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        return ClusterState(**json.loads(self.state_file.read_text()))

    def api_url(self, state: ClusterState) -> str:
        return f"https://127.0.0.1:{state.ports['apiserver']}"

    def s3_url(self, state: ClusterState) -> str:
        return f"http://127.0.0.1:{state.ports['minio']}"

    def registry_address(self, state: ClusterState) -> str:
        """host:port of the cluster's image registry, as image references name it."""
        return f"127.0.0.1:{state.ports['registry']}"

    def env_exports(self, state: ClusterState) -> dict[str, str]:
        path = [str(p) for p in self.bin_path] + [os.environ.get("PATH", "")]
        return {
            "KUBECONFIG": str(self.admin_kubeconfig),
            "AWS_ENDPOINT_URL": self.s3_url(state),
            "AWS_ACCESS_KEY_ID": state.minio_user,
            "AWS_SECRET_ACCESS_KEY": state.minio_password,
            "KUBESCRIBE_REGISTRY": self.registry_address(state),
            "PATH": ":".join(path),
        }

    # -- start-up ----------------------------------------------------------------------------------

    def _new_state(self) -> ClusterState:
        return ClusterState(
            cluster_id=uuid.uuid4().hex,
            ports={},
            minio_user="kubescribe-" + secrets.token_hex(4),
            minio_password=secrets.token_urlsafe(24),
        )

    def _keep_or_replace_ports(self, state: ClusterState) -> None:
        names = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kueue-health", "kueue-webhook")
        taken: set[int] = set()
        for name in (*names, "minio", "minio-console", "registry", *(f"kubelet-{node}" for node in NODES)):
            port = state.ports.get(name)
            while not port or port in taken or not _port_free(port):
                port = free_port()
            state.ports[name] = port
            taken.add(port)

    def _binary(self, name: str) -> str:
        for directory in self.bin_path:
            if (directory / name).is_file():
                return str(directory / name)
        raise ClusterError(
            f"{name}: binary not found in {':'.join(map(str, self.bin_path))}; run hack/build-binaries.sh"
        )

    def _start_all(self, state: ClusterState) -> None:
        ca = pki.CertificateAuthority(self.pki_dir)
        serving_cert, serving_key = ca.issue_server(
            "kube-apiserver",
            ("127.0.0.1", "10.96.0.1"),
            ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        )
        sa_private, sa_public = pki.ensure_signing_key(self.pki_dir)
        kubelet_client_cert, kubelet_client_key = ca.issue_client(pki.KUBELET_CLIENT)
        server = self.api_url(state)
        admin_cert, admin_key = ca.issue_client(pki.ADMIN)
        write_kubeconfig(
            self.admin_kubeconfig,
            kubeconfig(server, ca.cert_path, user=pki.ADMIN.user, client_cert=admin_cert, client_key=admin_key),
        )

        etcd_url = f"http://127.0.0.1:{state.ports['etcd']}"
        peer_url = f"http://127.0.0.1:{state.ports['etcd-peer']}"
        self._start(
            state,
            "etcd",
            [
                self._binary("etcd"),
                "--name=local",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=local={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            ready=lambda: _http_ok(f"{etcd_url}/health", contains='"health":"true"'),
        )

        self._start(
            state,
            "kube-apiserver",
            [
                self._binary("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={state.ports['apiserver']}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={ca.cert_path}",
                f"--cert-dir={self.pki_dir / 'apiserver'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-issuer={API_AUDIENCE}",
                f"--api-audiences={API_AUDIENCE}",
                f"--service-account-key-file={sa_public}",
                f"--service-account-signing-key-file={sa_private}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The loopback address cannot stand in the `kubernetes` Service's Endpoints.
                "--endpoint-reconciler-type=none",
                # No kube-proxy: webhooks behind a Service are dialled at the address of its EndpointSlice.
                "--enable-aggregator-routing=true",
                # `kubectl logs`: the API server calls the node agents' kubelet API.
                f"--kubelet-client-certificate={kubelet_client_cert}",
                f"--kubelet-client-key={kubelet_client_key}",
                f"--kubelet-certificate-authority={ca.cert_path}",
                "--kubelet-preferred-address-types=InternalIP",
            ],
            ready=lambda: _http_ok(f"{server}/readyz", contains="ok", tls=(ca.cert_path, admin_cert, admin_key)),
            timeout=60,
        )

        cm_kubeconfig = self._component_kubeconfig(ca, server, pki.CONTROLLER_MANAGER)
        self._start(
            state,
            "kube-controller-manager",
            [
                self._binary("kube-controller-manager"),
                f"--kubeconfig={cm_kubeconfig}",
                f"--authentication-kubeconfig={cm_kubeconfig}",
                f"--authorization-kubeconfig={cm_kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={sa_private}",
                f"--root-ca-file={ca.cert_path}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={state.ports['controller-manager']}",
                f"--cert-dir={self.pki_dir / 'controller-manager'}",
            ],
            ready=lambda: _http_ok(f"https://127.0.0.1:{state.ports['controller-manager']}/healthz", contains="ok"),
        )

        sched_kubeconfig = self._component_kubeconfig(ca, server, pki.SCHEDULER)
        self._start(
            state,
            "kube-scheduler",
            [
                self._binary("kube-scheduler"),
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={state.ports['scheduler']}",
                f"--cert-dir={self.pki_dir / 'scheduler'}",
            ],
            ready=lambda: _http_ok(f"https://127.0.0.1:{state.ports['scheduler']}/healthz", contains="ok"),
        )

        self._start_kueue(state, ca, server)

        minio_url = self.s3_url(state)
        self._start(
            state,
            "minio",
            [
                self._binary("minio"),
                "server",
                str(self.root / "minio"),
                "--quiet",
                f"--address=127.0.0.1:{state.ports['minio']}",
                f"--console-address=127.0.0.1:{state.ports['minio-console']}",
            ],
            env={
                "MINIO_ROOT_USER": state.minio_user,
                "MINIO_ROOT_PASSWORD": state.minio_password,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
            },
            ready=lambda: _http_ok(f"{minio_url}/minio/health/ready"),
        )

        self._start_registry(state)

        for node in NODES:
            node_kubeconfig = self._component_kubeconfig(ca, server, pki.node_identity(node))
            kubelet_cert, kubelet_key = ca.issue_server(f"kubelet-{node}", ("127.0.0.1",), (node,))
            self._start(
                state,
                f"{NODE_AGENT_PREFIX}{node}",
                [
                    sys.executable,
                    "-m",
                    "localcluster.nodeagent",
                    f"--node={node}",
                    f"--kubeconfig={node_kubeconfig}",
                    f"--state-dir={self.root / 'nodes' / node}",
                    f"--image-store={self.root / 'images'}",
                    f"--gpus={GPUS_PER_NODE}",
                    f"--kubelet-port={state.ports[f'kubelet-{node}']}",
                    f"--tls-cert-file={kubelet_cert}",
                    f"--tls-private-key-file={kubelet_key}",
                    f"--client-ca-file={ca.cert_path}",
                ],
                ready=functools.partial(self._node_ready, node),
            )

    def _start_registry(self, state: ClusterState) -> None:
        config = self.root / "registry.yaml"
        config.write_text(yaml.safe_dump(registry.registry_config(self.root / "registry", state.ports["registry"])))
        self._start(
            state,
            "registry",
            [self._binary("registry"), "serve", str(config)],
            env=registry.ENVIRONMENT,
            ready=lambda: _http_ok(f"http://{self.registry_address(state)}/v2/"),
        )

    def _start_kueue(self, state: ClusterState, ca: pki.CertificateAuthority, server: str) -> None:
        """Installs Kueue's CRDs, RBAC and webhooks from its pinned module's manifests, then starts it."""
        address, directory = host_address(), self.root / "kueue"
        try:
            source = kueue.module_dir(kueue.pinned_version((REPO / "hack" / "versions.env").read_text()))
            objects = kueue.api_objects(
                source, user=pki.KUEUE.user, webhook_address=address, webhook_port=state.ports["kueue-webhook"]
            )
        except kueue.ManifestError as error:
            raise ClusterError(f"kueue: {error}") from error
        manifests = directory / "manifests.json"
        directory.mkdir(parents=True, exist_ok=True)
        manifests.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        crds = [f"crd/{o['metadata']['name']}" for o in objects if o["kind"] == "CustomResourceDefinition"]
        # Server-side: the CRDs are too large for the annotation a client-side apply keeps.
        self._kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=localcluster", "-f", manifests)
        self._kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)

        config, certs = directory / "config.yaml", directory / "certs"
        shutil.rmtree(certs, ignore_errors=True)
        config.write_text(
            yaml.safe_dump(
                kueue.configuration(
                    health_port=state.ports["kueue-health"],
                    webhook_host=address,
                    webhook_port=state.ports["kueue-webhook"],
                    cert_dir=certs,
                )
            )
        )
        self._start(
            state,
            "kueue",
            [
                self._binary("kueue"),
                f"--config={config}",
                f"--kubeconfig={self._component_kubeconfig(ca, server, pki.KUEUE)}",
            ],
            ready=functools.partial(self._kueue_ready, state, certs),
            timeout=90,
        )

    def _kueue_ready(self, state: ClusterState, certs: Path) -> bool:
        """Kueue's readiness; while it waits for its certificate files, they are written from its Secret."""
        if not (certs / "tls.crt").exists():
            url = f"{self.api_url(state)}/api/v1/namespaces/{kueue.NAMESPACE}/secrets/{kueue.WEBHOOK_CERTIFICATE}"
            body = _http_get(url, tls=self._admin_tls())
            for name, content in kueue.certificate_files(json.loads(body) if body else {}).items():
                write_private(certs / name, content)
        return _http_ok(f"http://127.0.0.1:{state.ports['kueue-health']}/readyz", contains="ok")

    def _kubectl(self, *args: str | Path) -> None:
        command = [self._binary("kubectl"), f"--kubeconfig={self.admin_kubeconfig}", *map(str, args)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise ClusterError(f"kubectl {args[0]} failed: {result.stderr.strip()}")

    def _component_kubeconfig(self, ca: pki.CertificateAuthority, server: str, identity: pki.Identity) -> Path:
        cert, key = ca.issue_client(identity)
        path = self.pki_dir / f"{identity.file_stem}.kubeconfig"
        return write_kubeconfig(
            path, kubeconfig(server, ca.cert_path, user=identity.user, client_cert=cert, client_key=key)
        )

    def _start(
        self,
        state: ClusterState,
        name: str,
        argv: list[str],
        *,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> None:
        self._components[name] = Component(argv, ready, env or {}, timeout)
        self._launch(state, name)

    def _launch(self, state: ClusterState, name: str) -> None:
        component = self._components[name]
        log = self.logs_dir / f"{name}.log"
        full_env = {**os.environ, **component.env, processes.MARKER_VARIABLE: state.cluster_id}
        # Credentials of the outer shell stay out of the cluster's processes.
        for key in ("KUBECONFIG", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            full_env.pop(key, None)
        process = processes.spawn(component.argv, log, full_env, cwd=self.root)
        state.pids[name] = process.pid
        self._save(state)
        deadline = time.monotonic() + component.timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ClusterError(f"{name} exited with code {process.returncode} while starting; read {log}")
            if component.ready():
                return
            time.sleep(0.2)
        raise ClusterError(f"{name} was not ready within {component.timeout:.0f} s; read {log}")

    def _node_ready(self, node: str) -> bool:
        state = self.load_state()
        assert state is not None
        body = _http_get(f"{self.api_url(state)}/api/v1/nodes/{node}", tls=self._admin_tls())
        if body is None:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def is_running(self, state: ClusterState) -> bool:
        if not state.pids or not all(processes.is_alive(pid) for pid in state.pids.values()):
            return False
        return _http_ok(f"{self.api_url(state)}/readyz", contains="ok", tls=self._admin_tls())

    def _admin_tls(self) -> tuple[Path, Path, Path]:
        """(CA, client certificate, client key) of the admin identity."""
        stem = pki.ADMIN.file_stem
        return self.pki_dir / "ca.crt", self.pki_dir / f"{stem}.crt", self.pki_dir / f"{stem}.key"

    def _save(self, state: ClusterState) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.touch(mode=0o600)
        self.state_file.write_text(json.dumps(asdict(state), indent=2))

    def _write_env(self, state: ClusterState) -> None:
        lines = [f"export {key}={_shell_quote(value)}" for key, value in self.env_exports(state).items()]
        self.env_file.touch(mode=0o600)
        self.env_file.write_text("\n".join(lines) + "\n")

    def wipe(self) -> None:
        self.down()
        shutil.rmtree(self.root, ignore_errors=True)


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _http_get(url: str, tls: tuple[Path, Path, Path] | None = None) -> str | None:
    if url.startswith("https://"):
        if tls:
            context = ssl.create_default_context(cafile=str(tls[0]))
            context.load_cert_chain(str(tls[1]), str(tls[2]))
        else:
            # The components' own health ports serve self-signed certificates.
            context = ssl._create_unverified_context()  # noqa: S323
    else:
        context = None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def _http_ok(url: str, contains: str = "", tls: tuple[Path, Path, Path] | None = None) -> bool:
    body = _http_get(url, tls)
    return body is not None and contains in body
