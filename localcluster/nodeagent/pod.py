"""One pod on the local node, from admission to its end or deletion: init containers in order, then the
containers, under its restartPolicy and activeDeadlineSeconds, stopped gracefully when it is deleted, its
status reported as a kubelet reports it."""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from kubescribe.api.timestamps import now_timestamp, parse_timestamp
from localcluster.nodeagent.container import BACKOFF_MAX, BACKOFF_START, Container
from localcluster.nodeagent.environment import HOST_IP, PodEnvironment
from localcluster.nodeagent.images import Image, PullError
from localcluster.nodeagent.probes import Prober
from localcluster.nodeagent.sandbox import image_id, pull_policy
from localcluster.podspec import ConfigError, pod_phase

if TYPE_CHECKING:
    from localcluster.nodeagent.node import NodeAgent

log = logging.getLogger("localcluster.nodeagent")

POLL_SECONDS = 0.2
TOKEN_RETRY_SECONDS = 10.0


class PodWorker(threading.Thread):
    """Runs one pod from admission to its end (or deletion)."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        self.uid: str = pod["metadata"]["uid"]
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.namespace: str = pod["metadata"]["namespace"]
        self.pod_name: str = pod["metadata"]["name"]
        self.environment = PodEnvironment(
            agent, agent.state_dir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        )
        self.gone = threading.Event()  # the pod no longer exists in the API
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init_containers = [self.environment.container(c) for c in spec.get("initContainers", [])]
        self.containers = [self.environment.container(c) for c in spec.get("containers", [])]
        self.start_time = pod.get("status", {}).get("startTime") or now_timestamp()
        self.reason: str | None = None
        self.message: str | None = None
        self.transitions: dict[str, tuple[str, str]] = {}
        self.probers: dict[str, Prober] = {}
        """The probes of each running container, by its name."""
        self.sent: dict[str, Any] | None = None

    # -- main loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.environment.prepare(self.pod, self.init_containers + self.containers)
            self._loop()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.pod_name)
            self._kill_all(0)
        finally:
            self.agent.forget(self.uid)

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
            self._renew_token()
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
            self.probers.pop(container.name).stop()
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
                image = self._image(container)
            except PullError as error:
                self._back_off_pull(container, error)
                return
            try:
                start = self.environment.shim_command(self.pod, container, image)
            except ConfigError as error:
                container.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
                container.next_start = time.monotonic() + 2
                return
            container.start(*start)
            if "running" in container.state:
                prober = self.probers[container.name] = Prober(
                    container, self.pod, functools.partial(self.agent.event, self.pod)
                )
                prober.start()
            self.agent.event(self.pod, "Normal", "Started", f"Started container {container.name}")

    def _image(self, container: Container) -> Image:
        """The container's image, pulled under its imagePullPolicy; raises PullError while it cannot be pulled."""
        reference = container.spec.get("image", "")
        policy = pull_policy(container.spec)
        image = self.agent.images.present(reference) if policy != "Always" else None
        if image is None:
            self.agent.event(self.pod, "Normal", "Pulling", f'Pulling image "{reference}"')
            started = time.monotonic()
            image = self.agent.images.pull(reference, policy, self.agent.pull_credentials(self.pod))
            seconds = time.monotonic() - started
            self.agent.event(self.pod, "Normal", "Pulled", f'Successfully pulled image "{reference}" in {seconds:.3f}s')
        container.pull_backoff = BACKOFF_START
        container.image_id = image_id(reference, image.digest)
        return image

    def _back_off_pull(self, container: Container, error: PullError) -> None:
        """ErrImagePull, then ImagePullBackOff, trying again after a back-off that doubles up to its cap."""
        reference = container.spec.get("image", "")
        backing_off = container.state.get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff")
        message = f'Back-off pulling image "{reference}": {error}' if backing_off else str(error)
        container.state = {
            "waiting": {"reason": "ImagePullBackOff" if backing_off else "ErrImagePull", "message": message}
        }
        container.next_start = time.monotonic() + container.pull_backoff
        container.pull_backoff = min(container.pull_backoff * 2, BACKOFF_MAX)
        self.agent.event(self.pod, "Warning", "Failed", f'Failed to pull image "{reference}": {error}')

    def _renew_token(self) -> None:
        """Replaces the token of a pod given one, once it is near its end; a refusal is tried again later."""
        if self.environment.token_renewal is None:
            return
        try:
            self.environment.renew_token(self.pod)
        except ConfigError as error:
            log.warning("pod %s/%s: its token was not renewed: %s", self.namespace, self.pod_name, error)
            self.environment.token_renewal = time.monotonic() + TOKEN_RETRY_SECONDS

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
        for prober in self.probers.values():
            prober.stop()
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

    # -- status ------------------------------------------------------------------------------------

    def _condition(self, kind: str, true: bool) -> dict[str, Any]:
        status = "True" if true else "False"
        if self.transitions.get(kind, ("", ""))[0] != status:
            self.transitions[kind] = (status, now_timestamp())
        return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": self.transitions[kind][1]}

    def _push_status(self, phase: str) -> None:
        initialized = all(c.exit_code == 0 for c in self.init_containers)
        statuses = [c.status() for c in self.containers]
        ready = phase == "Running" and all(s["ready"] for s in statuses)
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
            "containerStatuses": statuses,
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.reason:
            status["reason"], status["message"] = self.reason, self.message
        if status != self.sent and self.agent.patch_pod_status(self.pod, status):
            self.sent = status
