"""kopf wiring. kopf watches TranscriptionJobs and the runner Jobs and pods; any change wakes the reconcile loop
(kubescribe.operator.reconciler), which also runs on a timer. The operator's liveness probe fails once the loop has
not finished a pass for `stall_seconds`. A TranscriptionJob being deleted is cancelled and its objects in S3
removed before kopf lets it go (kubescribe.operator.cleanup)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_client import start_http_server

from kubescribe.api.timestamps import now_timestamp
from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, is_finished
from kubescribe.contract import CLEANUP_FINALIZER
from kubescribe.operator import builders, cleanup, clients, metrics
from kubescribe.operator.reconciler import RUNNER_SELECTOR, Reconciler
from kubescribe.operator.settings import OperatorSettings

log = logging.getLogger("kubescribe.operator")

RUNNER_LABELS = dict(pair.split("=") for pair in RUNNER_SELECTOR.split(","))
BURST_SECONDS = 0.2


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
    await asyncio.to_thread(_cancel, tj, memo.api)
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


def _cancel(tj: dict[str, Any], api: client.ApiClient) -> None:
    """Stops the runner (deleting its Job stops its pods) and records the cancellation of an unfinished job."""
    metadata, status = tj["metadata"], tj.get("status") or {}
    with contextlib.suppress(ApiException):
        client.BatchV1Api(api).delete_namespaced_job(
            builders.child_name(tj), metadata["namespace"], propagation_policy="Background"
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
            client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], patch
            )
