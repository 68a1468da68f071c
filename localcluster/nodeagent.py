"""The local node agent: a kubelet stand-in that runs the containers of the pods bound to its node as
local processes (these machines have no container runtime).

It registers a Node with GPU capacity, watches the pods the scheduler binds to that node (and only
those), and for each pod runs the init containers in order and then the containers, with the
container's command and args (the image is taken to be this project's), its environment resolved as
a kubelet would, a directory of its own, and a kubeconfig carrying a token of the pod's
ServiceAccount. It reports status as a kubelet does and honours restartPolicy,
activeDeadlineSeconds and graceful deletion. Container output goes to log files under the node's
state directory (`python -m localcluster logs NAMESPACE/POD` shows them).

Paths: each container sees its volume mounts and its terminationMessagePath under its own root
directory, exported as KUBESCRIBE_CONTAINER_ROOT, and starts in `workingDir` under that root."""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kubescribe.api.timestamps import now_timestamp, parse_timestamp
from kubescribe.contract import ENV_CONTAINER_ROOT
from localcluster import processes
from localcluster.kubeconfig import kubeconfig, write_kubeconfig
from localcluster.podspec import ConfigError, container_env, expand, pod_phase

log = logging.getLogger("kubescribe.nodeagent")

NODE_VARIABLE = "KUBESCRIBE_NODE"
HOST_IP = "127.0.0.1"
TOKEN_SECONDS = 3600
MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
POLL_SECONDS = 0.2
LEASE_SECONDS, LEASE_RENEW_SECONDS, STATUS_EVERY_BEATS = 40, 10, 6
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


class Container:
    """One container of a pod and its current process, if any."""

    def __init__(self, spec: dict[str, Any], root: Path, log_path: Path) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.root = root
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.restart_count = 0
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.next_start = 0.0
        self.backoff = BACKOFF_START

    @property
    def termination_message_path(self) -> Path:
        path: str = self.spec.get("terminationMessagePath", "/dev/termination-log")
        return self.root / path.lstrip("/")

    @property
    def exit_code(self) -> int | None:
        return self.state["terminated"]["exitCode"] if "terminated" in self.state else None

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"kubescribe://{self.process.pid}" if self.process else "",
            "ready": "running" in self.state,
            "started": "running" in self.state,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }

    def start(self, env: dict[str, str]) -> None:
        command = [expand(part, env) for part in self.spec.get("command", []) + self.spec.get("args", [])]
        workdir = self.root / self.spec.get("workingDir", "/").lstrip("/")
        workdir.mkdir(parents=True, exist_ok=True)
        self.termination_message_path.parent.mkdir(parents=True, exist_ok=True)
        self.termination_message_path.unlink(missing_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {now_timestamp()} start {self.name} (restart {self.restart_count})\n".encode())
        try:
            self.process = processes.spawn(command, self.log_path, env, cwd=workdir)
        except OSError as error:
            self.process = None
            self.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(error),
                    "startedAt": now_timestamp(),
                    "finishedAt": now_timestamp(),
                }
            }
            return
        self.state = {"running": {"startedAt": now_timestamp()}}

    def reap(self) -> bool:
        """Records the exit of a finished process; True if it just ended."""
        if self.process is None or "running" not in self.state:
            return False
        code = self.process.poll()
        if code is None:
            return False
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal number
        message = self._termination_message(code)
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.state["running"]["startedAt"],
            "finishedAt": now_timestamp(),
            "containerID": f"kubescribe://{self.process.pid}",
        }
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        return True

    def _termination_message(self, code: int) -> str:
        path = self.termination_message_path
        message = path.read_bytes()[-MAX_MESSAGE_BYTES:].decode(errors="replace") if path.exists() else ""
        if not message and code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = self.log_path.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
            message = "\n".join(lines)[-2048:]
        return message

    def signal(self, sig: signal.Signals) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def schedule_restart(self) -> None:
        self.last_state = self.state
        self.restart_count += 1
        self.next_start = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.state = {
            "waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting failed container {self.name}"}
        }


class PodWorker(threading.Thread):
    """Runs one pod from admission to its end (or deletion)."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        self.uid: str = pod["metadata"]["uid"]
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.namespace: str = pod["metadata"]["namespace"]
        self.pod_name: str = pod["metadata"]["name"]
        self.directory = agent.state_dir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.gone = threading.Event()  # the pod no longer exists in the API
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init_containers = [self._container(c) for c in spec.get("initContainers", [])]
        self.containers = [self._container(c) for c in spec.get("containers", [])]
        self.start_time = pod.get("status", {}).get("startTime") or now_timestamp()
        self.reason: str | None = None
        self.message: str | None = None
        self.transitions: dict[str, tuple[str, str]] = {}
        self.sent: dict[str, Any] | None = None
        self.token_expiry = 0.0

    def _container(self, spec: dict[str, Any]) -> Container:
        root = self.directory / "containers" / spec["name"]
        return Container(spec, root, self.directory / "logs" / f"{spec['name']}.log")

    # -- main loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._prepare()
            self._loop()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.pod_name)
            self._kill_all(0)
        finally:
            self.agent.forget(self.uid)

    def _prepare(self) -> None:
        volumes = self.directory / "volumes"
        for volume in self.pod["spec"].get("volumes", []):
            (volumes / volume["name"]).mkdir(parents=True, exist_ok=True)
            if "emptyDir" not in volume and not volume["name"].startswith("kube-api-access-"):
                self.agent.event(
                    self.pod,
                    "Warning",
                    "VolumeNotSupported",
                    f"volume {volume['name']} is given to the container as an empty directory: "
                    "the local node supports emptyDir volumes only",
                )
        for container in self.init_containers + self.containers:
            container.root.mkdir(parents=True, exist_ok=True)
            container.log_path.parent.mkdir(parents=True, exist_ok=True)
            for mount in container.spec.get("volumeMounts", []):
                link = container.root / mount["mountPath"].lstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(volumes / mount["name"])

    def _loop(self) -> None:
        while not self.gone.is_set():
            if self.pod["metadata"].get("deletionTimestamp"):
                self._terminate_for_deletion()
                return
            if self._deadline_exceeded():
                self._kill_all(0)
                self.reason, self.message = (
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                )
                self._push_status(phase="Failed")
                return
            phase = self._step()
            self._push_status(phase)
            if phase in ("Succeeded", "Failed"):
                self._finish()
                return
            time.sleep(POLL_SECONDS)
        self._kill_all(0)

    def _step(self) -> str:
        """Starts, reaps and restarts containers; returns the pod's phase."""
        pending_init = next((c for c in self.init_containers if c.exit_code != 0), None)
        if pending_init:
            self._drive(pending_init)
        else:
            for container in self.containers:
                self._drive(container)
        return pod_phase(
            self.restart_policy, [c.state for c in self.init_containers], [c.state for c in self.containers]
        )

    def _drive(self, container: Container) -> None:
        if container.reap():
            code = container.exit_code
            self.agent.event(
                self.pod,
                "Normal" if code == 0 else "Warning",
                "Exited" if code == 0 else "Failed",
                f"container {container.name} exited with code {code}",
            )
            if self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0):
                container.schedule_restart()
            return
        if "waiting" in container.state and time.monotonic() >= container.next_start:
            try:
                env = self._environment(container)
            except ConfigError as error:
                container.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
                container.next_start = time.monotonic() + 2
                return
            if not container.spec.get("command"):
                container.state = {
                    "waiting": {
                        "reason": "CreateContainerError",
                        "message": "the local node runs a container's command and cannot run an "
                        "image's entrypoint: give the container a command",
                    }
                }
                container.next_start = time.monotonic() + 30
                return
            container.start(env)
            self.agent.event(self.pod, "Normal", "Started", f"Started container {container.name}")

    def _deadline_exceeded(self) -> bool:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        return deadline is not None and time.time() - parse_timestamp(self.start_time).timestamp() > deadline

    def _terminate_for_deletion(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds", 30)
        if any(c.process and c.process.poll() is None for c in self.init_containers + self.containers):
            self.agent.event(self.pod, "Normal", "Killing", "Stopping containers")
        self._kill_all(grace)
        phase = pod_phase("Never", [c.state for c in self.init_containers], [c.state for c in self.containers])
        self._push_status("Succeeded" if phase == "Succeeded" else "Failed")
        self._finish()

    def _kill_all(self, grace: float) -> None:
        everything = self.init_containers + self.containers
        for container in everything:
            container.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.process and c.process.poll() is None for c in everything):
            time.sleep(POLL_SECONDS)
        for container in everything:
            container.signal(signal.SIGKILL)
            if container.process:
                container.process.wait()
            container.reap()
            if "waiting" in container.state and container.restart_count == 0 and container in self.containers:
                container.state = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container was never started",
                        "finishedAt": now_timestamp(),
                    }
                }

    def _finish(self) -> None:
        """A terminal pod that is being deleted is removed, as a kubelet does once it has stopped it."""
        while not self.gone.is_set() and not self.pod["metadata"].get("deletionTimestamp"):
            time.sleep(POLL_SECONDS)
        if not self.gone.is_set():
            self.agent.delete_pod(self.pod)

    # -- environment -------------------------------------------------------------------------------

    def _environment(self, container: Container) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.executable).parent}:{BASE_PATH}",
            "HOME": str(container.root),
            "HOSTNAME": self.pod_name,
            "LANG": "C.UTF-8",
            ENV_CONTAINER_ROOT: str(container.root),
            NODE_VARIABLE: self.agent.node,
            processes.MARKER_VARIABLE: os.environ.get(processes.MARKER_VARIABLE, ""),
        }
        if self.pod["spec"].get("automountServiceAccountToken", True):
            env["KUBECONFIG"] = str(self._kubeconfig())

        def data(kind: str, name: str) -> dict[str, str] | None:
            return self.agent.object_data(self.namespace, kind, name)

        env.update(container_env(self.pod, container.spec, data))
        return env

    def _kubeconfig(self) -> Path:
        path = self.directory / "kubeconfig"
        if time.monotonic() < self.token_expiry:
            return path
        account = self.pod["spec"].get("serviceAccountName", "default")
        token = self.agent.service_account_token(self.pod, account)
        write_kubeconfig(path, kubeconfig(self.agent.server, self.agent.ca_file, user=account, token=token))
        self.token_expiry = time.monotonic() + TOKEN_SECONDS * 0.8
        return path

    # -- status ------------------------------------------------------------------------------------

    def _condition(self, kind: str, true: bool) -> dict[str, Any]:
        status = "True" if true else "False"
        if self.transitions.get(kind, ("", ""))[0] != status:
            self.transitions[kind] = (status, now_timestamp())
        return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": self.transitions[kind][1]}

    def _push_status(self, phase: str) -> None:
        initialized = all(c.exit_code == 0 for c in self.init_containers)
        ready = phase == "Running" and all("running" in c.state for c in self.containers)
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("PodReadyToStartContainers", True),
                self._condition("Initialized", initialized),
                self._condition("ContainersReady", ready),
                self._condition("Ready", ready),
            ],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.reason:
            status["reason"], status["message"] = self.reason, self.message
        if status != self.sent:
            self.agent.patch_pod_status(self.pod, status)
            self.sent = status


class NodeAgent:
    def __init__(self, node: str, kubeconfig_path: Path, state_dir: Path, gpus: int) -> None:
        self.node = node
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
                "containerRuntimeVersion": "kubescribe-process://1",
                "kubeletVersion": self._server_version(),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
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

    def patch_pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        current = pod.get("status", {}).get("conditions", [])
        status["conditions"] += [c for c in current if c["type"] not in OWN_CONDITIONS]
        try:
            self.core.patch_namespaced_pod_status(
                metadata["name"],
                metadata["namespace"],
                {"metadata": {"uid": metadata["uid"]}, "status": status},
                _content_type="application/strategic-merge-patch+json",
            )
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning(
                    "pod %s/%s: status update failed: %s", metadata["namespace"], metadata["name"], error.reason
                )

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

    def object_data(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        """The data of a Secret or ConfigMap, or None when it does not exist."""
        try:
            if kind == "Secret":
                secret = self.core.read_namespaced_secret(name, namespace)
                return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
            return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
        except ApiException as error:
            if error.status == 404:
                return None
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--gpus", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    agent = NodeAgent(args.node, args.kubeconfig, args.state_dir.resolve(), args.gpus)

    def stop(signum: int, frame: object) -> None:
        agent.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()


if __name__ == "__main__":
    main()
