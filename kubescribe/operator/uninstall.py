"""`python -m kubescribe.operator.uninstall`: what the chart's post-delete hook runs once the release is uninstalled.
With the operator gone, nothing would remove its finalizer from the TranscriptionJobs left, so they (and their
namespaces) would stay Terminating once deleted. This waits until the operator's pods are gone (so that none puts
the finalizer back), then removes it from every job in the operator's namespaces (KUBESCRIBE_NAMESPACES; empty:
every namespace). The jobs' objects in the store are left there."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION
from kubescribe.contract import CLEANUP_FINALIZER
from kubescribe.operator import clients
from kubescribe.operator.settings import OperatorSettings

log = logging.getLogger("kubescribe.operator.uninstall")

POLL_SECONDS = 1
PASSES = 5
"""Listings at most: a job whose finalizers change between the listing and the patch is seen again."""


def finalizer_removal(tj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The JSON patch that removes the operator's finalizer from the job, only if it is still where it was seen;
    None when the job has none."""
    finalizers = tj["metadata"].get("finalizers") or []
    if CLEANUP_FINALIZER not in finalizers:
        return None
    path = f"/metadata/finalizers/{finalizers.index(CLEANUP_FINALIZER)}"
    return [{"op": "test", "path": path, "value": CLEANUP_FINALIZER}, {"op": "remove", "path": path}]


def wait_for_operator(core: client.CoreV1Api, namespace: str, selector: str, timeout: float) -> bool:
    """Whether the operator's pods are all gone within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while core.list_namespaced_pod(namespace, label_selector=selector).items:
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def release_finalizers(custom: client.CustomObjectsApi, namespaces: list[str]) -> int:
    """Removes the operator's finalizer from every job in `namespaces` (empty: every namespace); returns how many
    jobs it was removed from."""
    released = 0
    for _ in range(PASSES):
        if namespaces:
            jobs = [
                tj
                for namespace in namespaces
                for tj in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            ]
        else:
            jobs = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        held = [(tj, patch) for tj in jobs if (patch := finalizer_removal(tj)) is not None]
        if not held:
            return released
        for tj, patch in held:
            metadata = tj["metadata"]
            try:
                custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    metadata["namespace"],
                    PLURAL,
                    metadata["name"],
                    patch,
                    _content_type="application/json-patch+json",
                )
            except ApiException as error:
                if error.status not in {404, 422}:  # gone, or its finalizers changed: the next listing tells
                    raise
                continue
            released += 1
    return released


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kubescribe.operator.uninstall", description=__doc__)
    parser.add_argument("--release-namespace", required=True, help="where the operator's pods ran")
    parser.add_argument("--operator-selector", required=True, help="the labels of the operator's pods")
    parser.add_argument("--wait-seconds", type=float, default=120, help="how long to wait for them to go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    settings = OperatorSettings()
    api = clients.api_client(settings)
    core = client.CoreV1Api(api)
    if not wait_for_operator(core, args.release_namespace, args.operator_selector, args.wait_seconds):
        log.warning("the operator's pods are still there after %g s; going on", args.wait_seconds)
    released = release_finalizers(client.CustomObjectsApi(api), settings.namespaces)
    log.info("removed the finalizer %s from %d TranscriptionJobs", CLEANUP_FINALIZER, released)


if __name__ == "__main__":
    main()
