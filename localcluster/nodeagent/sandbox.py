"""Pure pieces of running a container from its image, as a kubelet and its runtime decide them: the process's argv,
its user and groups, its variables and working directory, and paths inside its root filesystem."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.nodeagent.layers import LayerError, resolve
from localcluster.podspec import ConfigError, expand

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Identity:
    """Who the container's process runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...]


def process_argv(container: Mapping[str, Any], image: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The argv a container runs: `command` replaces the image's Entrypoint (and drops its Cmd), `args` replaces
    Cmd; `$(VAR)` in the container's own parts is expanded against its variables. Raises ConfigError when nothing
    is left to run."""
    command = [expand(part, env) for part in container.get("command") or []]
    args = [expand(part, env) for part in container.get("args") or []]
    argv = command + args if command else list(image.get("Entrypoint") or []) + (args or list(image.get("Cmd") or []))
    if not argv:
        raise ConfigError(f"no command specified: the container {container['name']} and its image name nothing to run")
    return argv


def _security(pod: Mapping[str, Any], container: Mapping[str, Any], field: str) -> Any:
    """A securityContext field: the container's own, else the pod's."""
    value = (container.get("securityContext") or {}).get(field)
    return value if value is not None else (pod["spec"].get("securityContext") or {}).get(field)


def _lookup(table: str, key: str, by_name: bool) -> list[str] | None:
    """The fields of the /etc/passwd or /etc/group line whose name (or number) is `key`."""
    for line in table.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0 if by_name else 2] == key:
            return fields
    return None


def _image_user(image: Mapping[str, Any], passwd: str, group: str, *, non_root: bool) -> tuple[int, int | None]:
    """The uid and (when it says) gid of the image's USER, `name|uid[:group|gid]`; root when it names none."""
    user, _, group_name = str(image.get("User") or "").partition(":")
    gid: int | None = None
    if not user:
        uid = 0
    elif user.isdigit():
        uid = int(user)
    elif non_root:
        raise ConfigError(
            f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root"
        )
    else:
        entry = _lookup(passwd, user, by_name=True)
        if entry is None:
            raise ConfigError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if group_name.isdigit():
        gid = int(group_name)
    elif group_name:
        found = _lookup(group, group_name, by_name=True)
        if found is None:
            raise ConfigError(f"unable to find group {group_name}: no matching entries in group file")
        gid = int(found[2])
    return uid, gid


def container_identity(
    pod: Mapping[str, Any], container: Mapping[str, Any], image: Mapping[str, Any], passwd: str, group: str
) -> Identity:
    """The uid, gid and supplementary groups of a container's process: runAsUser/runAsGroup (the container's over the
    pod's), else the image's USER resolved with the image's /etc/passwd and /etc/group; then the pod's
    supplementalGroups and fsGroup. Refuses what runAsNonRoot forbids, with the kubelet's words."""
    run_as_user = _security(pod, container, "runAsUser")
    non_root = bool(_security(pod, container, "runAsNonRoot"))
    if run_as_user is not None:
        uid, gid = int(run_as_user), None
    else:
        uid, gid = _image_user(image, passwd, group, non_root=non_root)
    if gid is None:
        entry = _lookup(passwd, str(uid), by_name=False)
        gid = int(entry[3]) if entry else 0
    run_as_group = _security(pod, container, "runAsGroup")
    if run_as_group is not None:
        gid = int(run_as_group)
    if non_root and uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root")
    pod_security = pod["spec"].get("securityContext") or {}
    extra = [*pod_security.get("supplementalGroups", []), pod_security.get("fsGroup")]
    groups = tuple(dict.fromkeys(int(g) for g in [gid, *extra] if g is not None))
    return Identity(uid=uid, gid=gid, groups=groups)


def container_variables(image: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The process's environment: the image's Env, then the pod's (which wins); PATH defaults as a runtime sets it."""
    variables: dict[str, str] = {"PATH": DEFAULT_PATH}
    for entry in image.get("Env") or []:
        name, _, value = entry.partition("=")
        variables[name] = value
    variables.update(env)
    return variables


def working_dir(container: Mapping[str, Any], image: Mapping[str, Any]) -> str:
    """The container's workingDir, else the image's WorkingDir, else /."""
    return str(container.get("workingDir") or image.get("WorkingDir") or "/")


def inside(root: Path, path: str) -> Path:
    """The host path of `path` as seen from a process chrooted at `root`: symlinks are followed within `root` (an
    absolute link target or `..` never leads out of it), as a runtime resolves a mount point."""
    try:
        return resolve(root, path, follow_last=True)
    except LayerError as error:
        raise ConfigError(str(error)) from None


def pull_policy(container: Mapping[str, Any]) -> str:
    """The container's imagePullPolicy, or the API server's default: Always for `:latest` or no tag, else
    IfNotPresent."""
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    reference = str(container.get("image", ""))
    if "@" in reference:
        return "IfNotPresent"
    last = reference.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def image_id(reference: str, digest: str) -> str:
    """A containerStatus' imageID: the image's repository at the digest it was pulled at."""
    repository = reference.partition("@")[0]
    last_slash = repository.rfind("/")
    if ":" in repository[last_slash + 1 :]:
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}@{digest}"
