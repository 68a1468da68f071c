"""The faults a scenario injects, each as a real machine or network would: a process killed without warning, a
pod deleted, a node's agent and its containers gone, the control plane's processes restarted, the store stopped."""

from __future__ import annotations

import random
import time
from typing import Any

from kubernetes import client

from localcluster import processes
from localcluster.cluster import NODE_AGENT_PREFIX, LocalCluster

OPERATOR_NAMESPACE = "kubescribe"
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"
GATEWAY_SELECTOR = "app.kubernetes.io/component=gateway"
RUNNER_SELECTOR = "app.kubernetes.io/component=runner"


def running_pid(pod: Any) -> int | None:
    """The process of the pod's first container while it runs (the local node's containerID is kubescribe://<pid>)."""
    statuses = pod.status.container_statuses or []
    if statuses and statuses[0].state.running and statuses[0].container_id:
        return int(statuses[0].container_id.split("://")[1])
    return None


class Faults:
    def __init__(self, cluster: LocalCluster, api: client.ApiClient, seed: int) -> None:
        self.cluster = cluster
        self.core = client.CoreV1Api(api)
        self.operator_hit: int | None = None
        self.random = random.Random(seed)  # noqa: S311 (the moments of faults, reproducible by seed)

    # -- the operator ------------------------------------------------------------------------------

    def operator_pods(self) -> list[Any]:
        pods = self.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_SELECTOR).items
        return [pod for pod in pods if not pod.metadata.deletion_timestamp]

    def kill_operator(self) -> str:
        """SIGKILL to the operator's process; its node agent restarts the container."""
        pid = self._operator_pid()
        processes.kill([pid])
        return f"SIGKILL operator process {pid}"

    def delete_operator_pod(self) -> str:
        """The operator's pod deleted with no grace (its process goes with it): its Deployment starts another."""
        pid = self._operator_pid()
        pods = self.operator_pods()
        for pod in pods:
            self.core.delete_namespaced_pod(pod.metadata.name, OPERATOR_NAMESPACE, grace_period_seconds=0)
        return f"deleted operator pod {', '.join(p.metadata.name for p in pods)} (process {pid})"

    def wait_operator_replaced(self, timeout: float = 180) -> float:
        """Seconds until an operator process other than the one last hit runs."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            pids = {running_pid(pod) for pod in self.operator_pods()} - {None, self.operator_hit}
            if pids:
                break
            time.sleep(0.2)
        return time.monotonic() - started

    def _operator_pid(self, timeout: float = 180) -> int:
        """The running operator's process, waiting for one to run; remembered as the one hit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = next((pid for pod in self.operator_pods() if (pid := running_pid(pod))), None)
            if pid and processes.is_alive(pid):
                self.operator_hit = pid
                return pid
            time.sleep(0.2)
        raise RuntimeError(f"no operator process ran within {timeout:.0f} s")

    # -- the gateway -------------------------------------------------------------------------------

    def gateway_pid(self) -> int | None:
        pods = self.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=GATEWAY_SELECTOR).items
        return next((pid for pod in pods if not pod.metadata.deletion_timestamp and (pid := running_pid(pod))), None)

    def kill_gateway(self) -> int:
        """SIGKILL to the gateway's process (its node agent restarts the container); the pid killed."""
        pid = self.gateway_pid()
        if pid is None:
            raise RuntimeError("the gateway is not running")
        processes.kill([pid])
        return pid

    # -- runners -----------------------------------------------------------------------------------

    def running_runners(self, namespace: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=RUNNER_SELECTOR).items
        # A failed node's pods still read Running: only live processes count.
        return [
            pod
            for pod in pods
            if (pid := running_pid(pod)) and processes.is_alive(pid) and not pod.metadata.deletion_timestamp
        ]

    def kill_runner(self, namespace: str) -> str | None:
        """SIGKILL to one running runner, mid-transcription."""
        pods = self.running_runners(namespace)
        if not pods:
            return None
        pod = self.random.choice(pods)
        pid = running_pid(pod)
        assert pid is not None
        processes.kill([pid])
        return f"SIGKILL runner {pod.metadata.name}"

    def wait_for_runner_on(self, namespace: str, node: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(pod.spec.node_name == node for pod in self.running_runners(namespace)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no runner ran on {node} within {timeout:.0f} s")
            time.sleep(0.5)

    def delete_runner(self, namespace: str) -> str | None:
        """One running runner pod deleted, as an eviction or a user would."""
        pods = self.running_runners(namespace)
        if not pods:
            return None
        pod = self.random.choice(pods)
        self.core.delete_namespaced_pod(pod.metadata.name, namespace)
        return f"deleted runner pod {pod.metadata.name}"

    # -- machines ----------------------------------------------------------------------------------

    def fail_node(self, node: str) -> str:
        """The node's agent and every container it runs SIGKILLed: the machine is gone."""
        self.cluster.stop_component(NODE_AGENT_PREFIX + node, kill=True)
        return f"node {node} failed (agent and containers SIGKILLed)"

    def restore_node(self, node: str) -> str:
        self.cluster.start_component(NODE_AGENT_PREFIX + node)
        return f"node {node} back"

    def crash_control_plane(self) -> str:
        """kube-apiserver and etcd SIGKILLed together."""
        for name in ("kube-apiserver", "etcd"):
            self.cluster.stop_component(name, kill=True)
        return "kube-apiserver and etcd SIGKILLed"

    def restart_control_plane(self) -> str:
        for name in ("etcd", "kube-apiserver"):
            self.cluster.start_component(name)
        return "etcd and kube-apiserver started again"

    def stop_store(self) -> str:
        self.cluster.stop_component("minio", kill=True)
        return "MinIO SIGKILLed"

    def start_store(self) -> str:
        self.cluster.start_component("minio")
        return "MinIO started again"
