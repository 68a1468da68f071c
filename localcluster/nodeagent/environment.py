"""What a container is given on the local node: its volumes, its variables, its pod's files (/etc/hosts,
/etc/hostname, /etc/resolv.conf) and a token of its pod's ServiceAccount, replaced before it expires as a kubelet
replaces a projected token; and the plan by which the shim (localcluster.nodeagent.shim) runs it from its image."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from localcluster import processes
from localcluster.kubeconfig import write_private
from localcluster.nodeagent import sandbox
from localcluster.nodeagent.container import Container
from localcluster.nodeagent.images import Image
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
TOKEN_VOLUME_PREFIX = "kube-api-access-"  # noqa: S105 - a volume's name
REPO = Path(__file__).resolve().parents[2]
SHIM = [sys.executable, "-m", "localcluster.nodeagent.shim"]


class PodEnvironment:
    """The files and variables of the containers of one pod, under the pod's directory on the node."""

    def __init__(self, agent: NodeAgent, directory: Path) -> None:
        self.agent = agent
        self.directory = directory
        self.token_renewal: float | None = None
        """When the pod's token is to be replaced; None until the pod was given one."""

    def container(self, spec: dict[str, Any]) -> Container:
        """A container of the pod, with its root directory and its logs' directory."""
        return Container(spec, self.directory / "containers" / spec["name"], self.directory / "logs" / spec["name"])

    def shim_command(
        self, pod: dict[str, Any], container: Container, image: Image
    ) -> tuple[list[str], dict[str, str], Path]:
        """The argv, variables and working directory of the shim that runs a container from its image; writes the
        shim's plan. Raises ConfigError as a kubelet refuses a container it cannot configure."""
        env = self._pod_variables(pod, container)
        passwd, group = (_read(sandbox.inside(image.rootfs, name)) for name in ("/etc/passwd", "/etc/group"))
        identity = sandbox.container_identity(pod, container.spec, image.config, passwd, group)
        variables = sandbox.container_variables(image.config, env)
        variables.setdefault("HOME", _home(passwd, identity.uid))
        run = container.root / f"run-{container.restart_count}"
        shutil.rmtree(container.root, ignore_errors=True)
        for name in ("upper", "work", "root"):
            (run / name).mkdir(parents=True)
        container.error_path = run / "start-error"
        container.plan = run / "plan.json"
        plan = {
            "lower": str(image.rootfs),
            "upper": str(run / "upper"),
            "work": str(run / "work"),
            "root": str(run / "root"),
            "hostname": pod["metadata"]["name"],
            "mounts": self._mounts(pod, container),
            "readOnlyRoot": bool((container.spec.get("securityContext") or {}).get("readOnlyRootFilesystem")),
            "argv": sandbox.process_argv(container.spec, image.config, variables),
            "env": variables,
            "cwd": sandbox.working_dir(container.spec, image.config),
            "uid": identity.uid,
            "gid": identity.gid,
            "groups": list(identity.groups),
            "errorFile": str(container.error_path),
        }
        write_private(container.plan, json.dumps(plan))
        shim_env = {
            "PATH": BASE_PATH,
            "PYTHONPATH": str(REPO),
            NODE_VARIABLE: self.agent.node,
            processes.MARKER_VARIABLE: os.environ.get(processes.MARKER_VARIABLE, ""),
        }
        return [*SHIM, str(container.plan)], shim_env, run

    def _mounts(self, pod: dict[str, Any], container: Container) -> list[dict[str, Any]]:
        """The container's volume mounts, its termination log and its pod's files, host source to container path."""
        files = self.directory / "files"
        files.mkdir(exist_ok=True)
        name = pod["metadata"]["name"]
        (files / "hostname").write_text(name + "\n")
        (files / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{HOST_IP}\t{name}\n")
        shutil.copyfile("/etc/resolv.conf", files / "resolv.conf")
        mounts = [
            {"source": str(files / file), "target": f"/etc/{file}", "readOnly": True}
            for file in ("hostname", "hosts", "resolv.conf")
        ]
        mounts.append(
            {
                "source": str(container.termination_message_path),
                "target": container.spec.get("terminationMessagePath", "/dev/termination-log"),
            }
        )
        for mount in container.spec.get("volumeMounts", []):
            source = (
                self.service_account_directory(pod)
                if mount["name"].startswith(TOKEN_VOLUME_PREFIX)
                else self.directory / "volumes" / mount["name"]
            )
            mounts.append(
                {"source": str(source), "target": mount["mountPath"], "readOnly": bool(mount.get("readOnly"))}
            )
        return mounts

    def _pod_variables(self, pod: dict[str, Any], container: Container) -> dict[str, str]:
        """A sandboxed container's variables from its pod: its own, HOSTNAME and the API server's service."""
        server = urlsplit(self.agent.server)
        env = {
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": server.hostname or HOST_IP,
            "KUBERNETES_SERVICE_PORT": str(server.port or 443),
            "KUBERNETES_PORT": f"tcp://{server.hostname}:{server.port}",
        }

        def data(kind: str, name: str) -> dict[str, str] | None:
            return self.agent.object_data(pod["metadata"]["namespace"], kind, name)

        env.update(container_env(pod, container.spec, data))
        return env

    def prepare(self, pod: dict[str, Any], containers: list[Container]) -> None:
        """Creates the pod's volumes, and each container's logs' directory."""
        volumes = self.directory / "volumes"
        for volume in pod["spec"].get("volumes", []):
            (volumes / volume["name"]).mkdir(parents=True, exist_ok=True)
            (volumes / volume["name"]).chmod(0o777)  # an emptyDir is writable by whichever user the container runs as
            if "emptyDir" not in volume and not volume["name"].startswith(TOKEN_VOLUME_PREFIX):
                self.agent.event(
                    pod,
                    "Warning",
                    "VolumeNotSupported",
                    f"volume {volume['name']} is given to the container as an empty directory: "
                    "the local node supports emptyDir volumes only",
                )
        for container in containers:
            container.log_dir.mkdir(parents=True, exist_ok=True)

    def service_account_directory(self, pod: dict[str, Any]) -> Path:
        """The pod's service account volume (token, ca.crt, namespace), as a kube-api-access volume holds it."""
        directory = self.directory / "serviceaccount"
        if self.token_renewal is None:
            directory.mkdir(mode=0o755, exist_ok=True)
            shutil.copyfile(self.agent.ca_file, directory / "ca.crt")
            (directory / "namespace").write_text(pod["metadata"]["namespace"])
            self.renew_token(pod)
        return directory

    def renew_token(self, pod: dict[str, Any]) -> None:
        """Writes a new token of the pod's ServiceAccount into its service account volume, when the pod has none yet
        or its token is near its end; raises ConfigError when the API server gives none."""
        if self.token_renewal is not None and time.monotonic() < self.token_renewal:
            return
        token = self.directory / "serviceaccount" / "token"
        staged = token.with_name(".token")
        staged.write_text(self.agent.service_account_token(pod, _account(pod)))
        staged.chmod(0o644)
        staged.replace(token)
        self.token_renewal = time.monotonic() + TOKEN_SECONDS * TOKEN_RENEWAL_SHARE


def command_argv(container: Container, command: list[str]) -> list[str]:
    """The argv that runs `command` in the running container (an exec probe's): the shim entering the container, to
    be started with the shim's variables and working directory."""
    return [*SHIM, "enter", str(container.plan), str(container.main_pid()), *command]


def _account(pod: dict[str, Any]) -> str:
    return str(pod["spec"].get("serviceAccountName", "default"))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _home(passwd: str, uid: int) -> str:
    """The user's home directory in the image's /etc/passwd, else /."""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid):
            return fields[5] or "/"
    return "/"
