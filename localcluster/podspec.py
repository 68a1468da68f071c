"""Pure pieces of the node agent: a container's environment as a kubelet resolves it, and a pod's
phase and conditions from the states of its containers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

ObjectData = Callable[[str, str], dict[str, str] | None]
"""(kind "Secret" or "ConfigMap", name) -> the object's data, or None when it does not exist."""

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class ConfigError(Exception):
    """The container cannot be configured yet (a missing Secret or key): kubelet's CreateContainerConfigError."""


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` escapes `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, value)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The value of a downward-API `fieldRef.fieldPath`."""
    metadata, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    subscript = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if subscript:
        return str(metadata.get(subscript.group(1), {}).get(subscript.group(2), ""))
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.hostIPs": status.get("hostIP", "127.0.0.1"),
        "status.podIPs": status.get("podIP", "127.0.0.1"),
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldPath {path!r}")
    return str(simple[path] or "")


def _env_from(sources: list[dict[str, Any]], data: ObjectData) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in sources:
        for kind, field in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            ref = source.get(field)
            if ref is None:
                continue
            values = data(kind, ref["name"])
            if values is None and not ref.get("optional", False):
                raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
            env.update({source.get("prefix", "") + key: value for key, value in (values or {}).items()})
    return env


def _value_from(pod: Mapping[str, Any], name: str, source: Mapping[str, Any], data: ObjectData) -> str | None:
    for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        ref = source.get(field)
        if ref is None:
            continue
        value = (data(kind, ref["name"]) or {}).get(ref["key"])
        if value is None and not ref.get("optional", False):
            raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
        return value
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    raise ConfigError(f"unsupported valueFrom for {name}: {sorted(source)}")


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], data: ObjectData) -> dict[str, str]:
    """The container's variables from `envFrom` then `env` (later ones win), `$(VAR)` in values expanded
    against the variables before them. A missing Secret, ConfigMap or key raises ConfigError unless optional."""
    env = _env_from(container.get("envFrom", []), data)
    for variable in container.get("env", []):
        name = variable["name"]
        if "valueFrom" in variable:
            value = _value_from(pod, name, variable["valueFrom"], data)
            if value is not None:
                env[name] = value
        else:
            env[name] = expand(variable.get("value", ""), env)
    return env


def pod_phase(restart_policy: str, init_states: list[dict[str, Any]], states: list[dict[str, Any]]) -> str:
    """A pod's phase from its init containers' and containers' current states, each a
    containerStatus `state` ({"waiting": ...} | {"running": ...} | {"terminated": {"exitCode": ...}})."""

    def exit_code(state: dict[str, Any]) -> int | None:
        return state["terminated"]["exitCode"] if "terminated" in state else None

    for state in init_states:
        code = exit_code(state)
        if code is None:
            return "Pending"
        if code != 0:
            return "Failed" if restart_policy == "Never" else "Pending"
    codes = [exit_code(state) for state in states]
    if all(code is not None for code in codes) and restart_policy != "Always":
        if all(code == 0 for code in codes):
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
    if any("running" in state for state in states) or any(code is not None for code in codes):
        return "Running"
    return "Pending"
