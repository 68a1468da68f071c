"""Runner pods stranded on a node whose kubelet is gone: which ones the operator removes."""

from __future__ import annotations

import datetime
from typing import Any

from kubescribe.api.timestamps import format_timestamp
from kubescribe.operator.reconciler import STRANDED_AFTER_SECONDS, stranded_pods

NOW = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)


def pod(name: str, phase: str = "Running", deleted_seconds_ago: float | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "team"}
    if deleted_seconds_ago is not None:
        metadata["deletionTimestamp"] = format_timestamp(NOW - datetime.timedelta(seconds=deleted_seconds_ago))
    return {"metadata": metadata, "spec": {"nodeName": "node-1"}, "status": {"phase": phase}}


def test_a_pod_terminating_long_past_its_grace_period_is_stranded() -> None:
    stuck = pod("stuck", deleted_seconds_ago=STRANDED_AFTER_SECONDS + 5)
    assert stranded_pods([stuck], NOW) == [stuck]


def test_pods_that_run_or_end_or_are_still_within_their_time_are_not() -> None:
    pods = [
        pod("running"),
        pod("just-deleted", deleted_seconds_ago=5),
        pod("pending-deleted", phase="Pending", deleted_seconds_ago=STRANDED_AFTER_SECONDS - 5),
        pod("ended", phase="Failed", deleted_seconds_ago=STRANDED_AFTER_SECONDS + 600),
        pod("done", phase="Succeeded", deleted_seconds_ago=STRANDED_AFTER_SECONDS + 600),
    ]
    assert stranded_pods(pods, NOW) == []


def test_a_pod_that_never_started_on_a_lost_node_is_stranded_too() -> None:
    never_started = pod("never", phase="Pending", deleted_seconds_ago=STRANDED_AFTER_SECONDS + 1)
    assert stranded_pods([never_started], NOW) == [never_started]
