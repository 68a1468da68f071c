"""kopf wiring. kopf watches TranscriptionJobs and the runner Jobs and pods, and threads of the operator's own watch
the pools' objects in its namespace (RunnerPools, their assignments and Deployments; kopf watches every namespace
or the jobs' ones, where the operator may not read those); any change wakes the reconcile loop
(kubescribe.operator.reconciler), which also runs on a timer. The operator's liveness probe fails once the loop has
not finished a pass for `stall_seconds`. A TranscriptionJob being deleted is cancelled (its runner Job or its
assignments deleted) and its objects in S3 removed before kopf lets it go (kubescribe.operator.cleanup)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from prometheus_client import start_http_server

from kubescribe.api.pools import ASSIGNMENT_PLURAL, POOL_LABEL, POOL_PLURAL
from kubescribe.api.timestamps import now_timestamp
from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, is_finished
from kubescribe.contract import CLEANUP_FINALIZER
from kubescribe.operator import builders, cleanup, clients, metrics, pools
from kubescribe.operator.reconciler import RUNNER_SELECTOR, Reconciler
from kubescribe.operator.settings import OperatorSettings

log = logging.getLogger("kubescribe.operator")

RUNNER_LABELS = dict(pair.split("=") for pair in RUNNER_SELECTOR.split(","))
BURST_SECONDS = 0.2
WATCH_SECONDS = 300
"""How long one of the pool watches runs before it is made again."""
WATCH_RETRY_SECONDS = 5


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings = OperatorSettings()
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.networking.request_timeout = operator_settings.request_timeout_seconds
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = CLEANUP_FINALIZER
    # The status schema is structural and keeps no `status.kopf`: kopf's own state goes in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubescribe.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubescribe.io")
    memo.settings = operator_settings
    memo.api = clients.api_client(operator_settings)
    memo.store = clients.store(operator_settings)
    memo.wake = asyncio.Event()
    memo.last_pass = time.monotonic()
    memo.loop = asyncio.create_task(_reconcile_forever(Reconciler(operator_settings, memo.api, memo.store), memo))
    loop = asyncio.get_running_loop()
    _watch_pools(memo.api, operator_settings.operator_namespace, lambda: loop.call_soon_threadsafe(memo.wake.set))
    start_http_server(operator_settings.metrics_port)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await memo.loop


@kopf.on.probe(id="reconcileLoop")
def reconcile_loop(memo: kopf.Memo, **_: Any) -> str:
    """Served on the liveness endpoint: how long ago the reconcile loop finished a pass; a failure (HTTP 500)
    once that is longer than `stall_seconds`."""
    since = time.monotonic() - memo.last_pass
    if since > memo.settings.stall_seconds:
        raise kopf.PermanentError(f"the reconcile loop has not finished a pass for {since:.0f} s")
    return f"a pass finished {since:.0f} s ago"


async def _reconcile_forever(reconciler: Reconciler, memo: kopf.Memo) -> None:
    resync_seconds = memo.settings.resync_seconds
    timeout = resync_seconds
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(memo.wake.wait(), timeout=timeout)
        await asyncio.sleep(BURST_SECONDS)  # one pass for a burst of changes
        memo.wake.clear()
        timeout = resync_seconds
        try:
            next_expiry = await asyncio.to_thread(reconciler.reconcile)
        except Exception:
            metrics.reconcile_errors.inc()
            log.exception("reconcile pass failed")
            continue
        finally:
            memo.last_pass = time.monotonic()
        if next_expiry is not None:
            timeout = min(resync_seconds, next_expiry)


def _watch_pools(api: client.ApiClient, namespace: str, wake: Callable[[], object]) -> None:
    """Starts a thread for each kind of the pools' objects that calls `wake` on every change of one in
    `namespace`. Leases are not watched: their renewals are no news, and the loop looks again when one runs out."""
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    lists = {
        POOL_PLURAL: functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, POOL_PLURAL),
        ASSIGNMENT_PLURAL: functools.partial(
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, ASSIGNMENT_PLURAL
        ),
        "deployments": functools.partial(apps.list_namespaced_deployment, namespace, label_selector=POOL_LABEL),
    }
    for kind, list_objects in lists.items():
        threading.Thread(target=_wake_on_changes, args=(kind, list_objects, wake), name=kind, daemon=True).start()


def _wake_on_changes(kind: str, list_objects: Callable[..., Any], wake: Callable[[], object]) -> None:
    while True:
        try:
            for _ in watch.Watch().stream(list_objects, timeout_seconds=WATCH_SECONDS):
                wake()
        except Exception as error:  # the API server restarting, a CRD not installed yet: watch again
            log.warning("watching %s failed (%s); watching again in %d s", kind, error, WATCH_RETRY_SECONDS)
            time.sleep(WATCH_RETRY_SECONDS)


@kopf.on.event(GROUP, VERSION, PLURAL)
@kopf.on.event("batch", "v1", "jobs", labels=RUNNER_LABELS)
@kopf.on.event("", "v1", "pods", labels=RUNNER_LABELS)
async def changed(memo: kopf.Memo, **_: Any) -> None:
    memo.wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(body: kopf.Body, memo: kopf.Memo, retry: int, runtime: datetime.timedelta, **_: Any) -> None:
    """Stops the job and deletes its objects; tries again while the store fails, until `cleanup_timeout_seconds`
    have passed since the first try: then lets the job go, with a Warning Event."""
    tj = dict(body)
    await asyncio.to_thread(_cancel, tj, memo.api, memo.settings.operator_namespace)
    left = await asyncio.to_thread(cleanup.delete_objects, tj, memo.settings, memo.store)
    if left is None:
        return
    timeout = memo.settings.cleanup_timeout_seconds
    if not cleanup.gives_up(runtime.total_seconds(), retry, timeout):
        raise kopf.TemporaryError(
            f"{len(left.uris)} of the job's objects are left in the store ({left.error}); trying again",
            delay=cleanup.retry_delay(retry),
        )
    message = cleanup.abandoned_message(left, timeout)
    log.warning("%s/%s: %s", tj["metadata"]["namespace"], tj["metadata"]["name"], message)
    core = client.CoreV1Api(memo.api)
    now = datetime.datetime.now(datetime.UTC)
    await asyncio.to_thread(clients.post_event, core, tj, "Warning", cleanup.ABANDONED, message, now=now)


def _cancel(tj: dict[str, Any], api: client.ApiClient, pools_namespace: str) -> None:
    """Stops the runner (deleting its Job stops its pods; deleting its assignments, their workers' work) and records
    the cancellation of an unfinished job."""
    metadata, status = tj["metadata"], tj.get("status") or {}
    with contextlib.suppress(ApiException):
        client.BatchV1Api(api).delete_namespaced_job(
            builders.child_name(tj), metadata["namespace"], propagation_policy="Background"
        )
    custom = client.CustomObjectsApi(api)
    with contextlib.suppress(ApiException):
        selector = f"{pools.JOB_UID_LABEL}={metadata['uid']}"
        listing = custom.list_namespaced_custom_object(
            GROUP, VERSION, pools_namespace, ASSIGNMENT_PLURAL, label_selector=selector
        )
        for assignment in listing["items"]:
            with contextlib.suppress(ApiException):
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, pools_namespace, ASSIGNMENT_PLURAL, assignment["metadata"]["name"]
                )
    if not is_finished(status):
        patch = {
            "status": {
                "phase": "Cancelled",
                "reason": "Cancelled",
                "message": "the job was deleted",
                "completionTime": now_timestamp(),
            }
        }
        with contextlib.suppress(ApiException):
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], patch
            )
