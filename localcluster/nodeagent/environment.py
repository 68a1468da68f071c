"""What a container is given on the local node: its directories and volumes, its variables, and a
kubeconfig with a token of its pod's ServiceAccount, replaced before it expires as a kubelet replaces a
projected token.

Paths: each container sees its volume mounts and its terminationMessagePath under its own root
directory, exported as KUBESCRIBE_CONTAINER_ROOT, and starts in `workingDir` under that root."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubescribe.contract import ENV_CONTAINER_ROOT
from localcluster import processes
from localcluster.kubeconfig import kubeconfig, write_kubeconfig, write_private
from localcluster.nodeagent.container import Container
from localcluster.podspec import container_env

if TYPE_CHECKING:
    from localcluster.nodeagent.node import NodeAgent

NODE_VARIABLE = "KUBESCRIBE_NODE"
HOST_IP = "127.0.0.1"
"""The node's address, and each pod's: the containers run on the host's network."""
TOKEN_SECONDS = 3600
TOKEN_RENEWAL_SHARE = 0.8
"""A pod's token is replaced once this share of its lifetime has passed."""
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PodEnvironment:
    """The files and variables of the containers of one pod, under the pod's directory on the node."""

    def __init__(self, agent: NodeAgent, directory: Path) -> None:
        self.agent = agent
        self.directory = directory
        self.token_renewal: float | None = None
        """When the pod's token is to be replaced; None until the pod was given one."""

    def container(self, spec: dict[str, Any]) -> Container:
        """A container of the pod, with its root directory and its log file."""
        root = self.directory / "containers" / spec["name"]
        return Container(spec, root, self.directory / "logs" / f"{spec['name']}.log")

    def prepare(self, pod: dict[str, Any], containers: list[Container]) -> None:
        """Creates the pod's volumes, and each container's root with its volume mounts in it."""
        volumes = self.directory / "volumes"
        for volume in pod["spec"].get("volumes", []):
            (volumes / volume["name"]).mkdir(parents=True, exist_ok=True)
            if "emptyDir" not in volume and not volume["name"].startswith("kube-api-access-"):
                self.agent.event(
                    pod,
                    "Warning",
                    "VolumeNotSupported",
                    f"volume {volume['name']} is given to the container as an empty directory: "
                    "the local node supports emptyDir volumes only",
                )
        for container in containers:
            container.root.mkdir(parents=True, exist_ok=True)
            container.log_path.parent.mkdir(parents=True, exist_ok=True)
            for mount in container.spec.get("volumeMounts", []):
                link = container.root / mount["mountPath"].lstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(volumes / mount["name"])

    def variables(self, pod: dict[str, Any], container: Container) -> dict[str, str]:
        """The container's environment; raises ConfigError while a Secret, ConfigMap or token it needs is missing."""
        env = {
            "PATH": f"{Path(sys.executable).parent}:{BASE_PATH}",
            "HOME": str(container.root),
            "HOSTNAME": pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            ENV_CONTAINER_ROOT: str(container.root),
            NODE_VARIABLE: self.agent.node,
            processes.MARKER_VARIABLE: os.environ.get(processes.MARKER_VARIABLE, ""),
        }
        if pod["spec"].get("automountServiceAccountToken", True):
            env["KUBECONFIG"] = str(self._kubeconfig(pod))

        def data(kind: str, name: str) -> dict[str, str] | None:
            return self.agent.object_data(pod["metadata"]["namespace"], kind, name)

        env.update(container_env(pod, container.spec, data))
        return env

    def _kubeconfig(self, pod: dict[str, Any]) -> Path:
        path = self.directory / "kubeconfig"
        if self.token_renewal is None:
            self.renew_token(pod)
            token_file, agent = self._token_file, self.agent
            write_kubeconfig(path, kubeconfig(agent.server, agent.ca_file, user=_account(pod), token_file=token_file))
        return path

    def renew_token(self, pod: dict[str, Any]) -> None:
        """Writes a new token of the pod's ServiceAccount where its kubeconfig names it, when the pod has none yet or
        its token is near its end; raises ConfigError when the API server gives none."""
        if self.token_renewal is not None and time.monotonic() < self.token_renewal:
            return
        write_private(self._token_file, self.agent.service_account_token(pod, _account(pod)))
        self.token_renewal = time.monotonic() + TOKEN_SECONDS * TOKEN_RENEWAL_SHARE

    @property
    def _token_file(self) -> Path:
        return self.directory / "token"


def _account(pod: dict[str, Any]) -> str:
    return str(pod["spec"].get("serviceAccountName", "default"))
