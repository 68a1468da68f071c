"""The node's side of the kubelet API: the Node with its labels, capacity and status, its lease, the
watch of the pods bound to it (one worker each), and the calls its pods need: status, deletion,
ServiceAccount tokens, Secrets and ConfigMaps, events."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kubescribe.api.timestamps import now_timestamp
from localcluster import processes
from localcluster.nodeagent.environment import HOST_IP, NODE_VARIABLE, TOKEN_SECONDS
from localcluster.nodeagent.images import Credentials, ImageStore, registry_credentials
from localcluster.nodeagent.kubeletapi import LogSource
from localcluster.nodeagent.pod import PodWorker
from localcluster.podspec import ConfigError

log = logging.getLogger("localcluster.nodeagent")

LEASE_SECONDS, LEASE_RENEW_SECONDS, STATUS_EVERY_BEATS = 40, 10, 6
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
"""The pod conditions a pod worker reports; the others a pod has (the scheduler's) are kept."""


class NodeAgent:
    """One node of the local cluster and the workers of its pods."""

    def __init__(
        self, node: str, kubeconfig_path: Path, state_dir: Path, images: ImageStore, *, gpus: int, kubelet_port: int
    ) -> None:
        self.node = node
        self.images = images
        self.kubelet_port = kubelet_port
        self.state_dir = state_dir
        self.gpus = gpus
        settings = yaml.safe_load(kubeconfig_path.read_text())
        self.server: str = settings["clusters"][0]["cluster"]["server"]
        self.ca_file = Path(settings["clusters"][0]["cluster"]["certificate-authority"])
        self.api = client.ApiClient(config.new_client_from_config(str(kubeconfig_path)).configuration)
        self.core = client.CoreV1Api(self.api)
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.started = now_timestamp()

    # -- node --------------------------------------------------------------------------------------

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(self.gpus),
            "kubescribe.io/local-node": "true",
        }
        try:
            self.core.create_node(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": labels}}
            )
        except ApiException as error:
            if error.status != 409:
                raise
        self.post_status()
        self.renew_lease()

    def renew_lease(self) -> None:
        """The node's heartbeat, as a kubelet renews it; the node lifecycle controller reads it."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = {
            "metadata": {"name": self.node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": stamp},
        }
        leases = client.CoordinationV1Api(self.api)
        try:
            leases.patch_namespaced_lease(self.node, "kube-node-lease", {"spec": lease["spec"]})
        except ApiException as error:
            if error.status != 404:
                raise
            leases.create_namespaced_lease("kube-node-lease", lease)

    def post_status(self) -> None:
        memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory_kib}Ki",
            "pods": "110",
            "ephemeral-storage": f"{shutil.disk_usage(self.state_dir).total // 1024}Ki",
            "nvidia.com/gpu": str(self.gpus),
        }
        stamp = now_timestamp()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self.started,
            }

        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "local node"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "local node"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "local node"),
                condition("Ready", "True", "KubeletReady", "local node agent is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": self.node}],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "kubescribe local node",
                "containerRuntimeVersion": "kubescribe-shim://1",
                "kubeletVersion": self._server_version(),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
        }
        self.core.patch_node_status(self.node, {"status": status})

    def _server_version(self) -> str:
        return str(client.VersionApi(self.api).get_code().git_version)

    # -- pods --------------------------------------------------------------------------------------

    def run(self) -> None:
        self._kill_orphans()
        self.register()
        threading.Thread(target=self._heartbeats, daemon=True).start()
        resource_version = ""
        while not self.stopping.is_set():
            try:
                if not resource_version:
                    resource_version = self._relist()
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=f"spec.nodeName={self.node}",
                    resource_version=resource_version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    pod = event["raw_object"]
                    if event["type"] == "ERROR":
                        resource_version = ""
                        break
                    resource_version = pod["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.observe(pod, deleted=event["type"] == "DELETED")
            except ApiException as error:
                if error.status == 410:
                    resource_version = ""
                else:
                    log.warning("watching pods failed: %s", error.reason)
                    time.sleep(1)
            except Exception as error:  # the connection dropped: watch again
                log.warning("watching pods failed: %s", error)
                time.sleep(1)

    def _relist(self) -> str:
        response = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node}", _preload_content=False
        )
        listing = json.loads(response.data)
        seen = set()
        for pod in listing["items"]:
            seen.add(pod["metadata"]["uid"])
            self.observe(pod, deleted=False)
        with self.lock:
            for uid, worker in list(self.workers.items()):
                if uid not in seen:
                    worker.gone.set()
        return str(listing["metadata"]["resourceVersion"])

    def observe(self, pod: dict[str, Any], deleted: bool) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker:
                worker.pod = pod
                if deleted:
                    worker.gone.set()
                return
            if deleted:
                return
            phase = pod.get("status", {}).get("phase", "Pending")
            if phase in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    self.delete_pod(pod)
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            worker.start()

    def container_log(self, namespace: str, name: str, container: str, previous: bool) -> LogSource | str:
        """A container's log for the kubelet API (its latest run's, or the one before), or why there is none."""
        with self.lock:
            worker = next((w for w in self.workers.values() if (w.namespace, w.pod_name) == (namespace, name)), None)
        if worker is None:
            return f'pod "{name}" in namespace "{namespace}" is not running on node {self.node}'
        found = next((c for c in worker.init_containers + worker.containers if c.name == container), None)
        if found is None:
            return f"container {container} is not valid for pod {name}"
        runs = found.logs()
        if previous and len(runs) < 2:
            return f'previous terminated container "{container}" in pod "{name}" not found'
        if not runs:
            return f'container "{container}" in pod "{name}" is waiting to start'
        path = runs[-2] if previous else runs[-1]
        return LogSource(path, running=lambda: not previous and found.log_path == path and found.is_running())

    def forget(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)

    def _kill_orphans(self) -> None:
        """Containers of an earlier run of this agent (one killed without a chance to stop them)."""
        # Other local clusters on this machine name their nodes alike: the cluster's marker tells them apart.
        markers = {NODE_VARIABLE: self.node, processes.MARKER_VARIABLE: os.environ.get(processes.MARKER_VARIABLE, "")}
        orphans = processes.marked_processes(markers)
        if orphans:
            log.info("stopping %d processes left by an earlier run", len(orphans))
            processes.terminate(orphans, grace_seconds=5)

    def _heartbeats(self) -> None:
        beats = 0
        while not self.stopping.wait(LEASE_RENEW_SECONDS):
            beats += 1
            try:
                self.renew_lease()
                if beats % STATUS_EVERY_BEATS == 0:
                    self.post_status()
            except Exception as error:
                log.warning("node heartbeat failed: %s", error)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            for container in worker.init_containers + worker.containers:
                container.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for worker in workers:
            for container in worker.init_containers + worker.containers:
                if container.process:
                    try:
                        container.process.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        container.signal(signal.SIGKILL)

    # -- API calls ---------------------------------------------------------------------------------

    def patch_pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> bool:
        """Whether the pod's status is now `status`; a pod that is gone (or is another pod of the same name now)
        counts as done."""
        metadata = pod["metadata"]
        current = pod.get("status", {}).get("conditions", [])
        others = [c for c in current if c["type"] not in OWN_CONDITIONS]
        try:
            self.core.patch_namespaced_pod_status(
                metadata["name"],
                metadata["namespace"],
                {
                    "metadata": {"uid": metadata["uid"]},
                    "status": {**status, "conditions": status["conditions"] + others},
                },
                _content_type="application/strategic-merge-patch+json",
            )
        except ApiException as error:
            if error.status in (404, 409):
                return True
            log.warning("pod %s/%s: status update failed: %s", metadata["namespace"], metadata["name"], error.reason)
            return False
        return True

    def delete_pod(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(
                metadata["name"],
                metadata["namespace"],
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=metadata["uid"])
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def service_account_token(self, pod: dict[str, Any], account: str) -> str:
        metadata = pod["metadata"]
        # No audience: the API server's own, which the pod's projected token volume asks for too.
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=TOKEN_SECONDS,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=metadata["name"], uid=metadata["uid"]
                ),
            )
        )
        try:
            response = self.core.create_namespaced_service_account_token(account, metadata["namespace"], request)
        except ApiException as error:
            raise ConfigError(f"token for ServiceAccount {account}: {error.status} {error.reason}") from error
        return str(response.status.token)

    def pull_credentials(self, pod: dict[str, Any]) -> Credentials:
        """The registry credentials of the pod's imagePullSecrets; a missing one is named in an event, as a kubelet
        does, and the pull goes on without it."""
        secrets = []
        for reference in pod["spec"].get("imagePullSecrets", []):
            try:
                secret = self.core.read_namespaced_secret(reference["name"], pod["metadata"]["namespace"])
            except ApiException as error:
                if error.status != 404:
                    raise
                self.event(
                    pod,
                    "Warning",
                    "FailedToRetrieveImagePullSecret",
                    f"Unable to retrieve some image pull secrets ({reference['name']}); attempting to pull the image "
                    "may not succeed.",
                )
                continue
            secrets.append(self.api.sanitize_for_serialization(secret))
        return registry_credentials(secrets)

    def object_data(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        """The data of a Secret or ConfigMap, or None when it does not exist. Raises ConfigError while the API server
        refuses it: the Node authorizer learns of a new pod's Secrets a moment after the pod is bound."""
        try:
            if kind == "Secret":
                secret = self.core.read_namespaced_secret(name, namespace)
                return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
            return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status == 403:
                raise ConfigError(f'{kind.lower()} "{name}" is not yet readable by node {self.node}') from None
            raise

    def event(self, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
        metadata = pod["metadata"]
        stamp = now_timestamp()
        body = {
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
            "involvedObject": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        }
        try:
            self.core.create_namespaced_event(metadata["namespace"], body)
        except ApiException as error:
            log.warning("event %s for %s/%s failed: %s", reason, metadata["namespace"], metadata["name"], error.reason)
