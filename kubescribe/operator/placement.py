"""Where a runner pod runs: its job's own placement over the chart's settings for runner pods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.utils import parse_quantity

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.operator.settings import OperatorSettings


def pod_placement(spec: TranscriptionJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The runner pod's scheduling fields. A pod with GPUs gets the settings' node selector, tolerations and runtime
    class, then its job's node selector and tolerations (its labels win); a pod without GPUs only its job's. The
    job's priority class wins over the settings' one."""
    resources = spec.resources
    gpus = resources.gpu > 0
    tolerations: list[dict[str, Any]] = []
    for toleration in [*(settings.runner_tolerations if gpus else []), *resources.tolerations]:
        dumped = toleration.model_dump(mode="json", by_alias=True, exclude_none=True)
        if dumped not in tolerations:
            tolerations.append(dumped)
    fields = {
        "nodeSelector": {**(settings.runner_node_selector if gpus else {}), **resources.node_selector},
        "tolerations": tolerations,
        "runtimeClassName": settings.runner_runtime_class_name if gpus else "",
        "priorityClassName": resources.priority_class_name or settings.runner_priority_class_name,
        "imagePullSecrets": [{"name": name} for name in settings.runner_image_pull_secrets],
    }
    return {key: value for key, value in fields.items() if value}


def raised_limits(limits: Mapping[str, str], requests: Mapping[str, str]) -> dict[str, str]:
    """`limits`, each raised to its request where that is more (the API server refuses a request above its limit)."""
    return {
        name: requests[name] if name in requests and parse_quantity(requests[name]) > parse_quantity(limit) else limit
        for name, limit in limits.items()
    }
