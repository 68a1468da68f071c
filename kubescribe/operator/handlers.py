"""kopf wiring. kopf watches TranscriptionJobs and the runner Jobs and pods; any change wakes the reconcile loop
(kubescribe.operator.reconciler), which also runs on a timer. A TranscriptionJob being deleted is cancelled and its
objects in S3 removed before kopf lets it go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from prometheus_client import start_http_server
from pydantic import ValidationError

from kubescribe import s3
from kubescribe.api.timestamps import now_timestamp
from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, is_finished
from kubescribe.operator import builders, metrics
from kubescribe.operator.reconciler import RUNNER_SELECTOR, Reconciler
from kubescribe.operator.settings import OperatorSettings

log = logging.getLogger("kubescribe.operator")

"""Set (to "true") on jobs whose source object was uploaded for them: it is deleted with the job."""
RUNNER_LABELS = dict(pair.split("=") for pair in RUNNER_SELECTOR.split(","))
BURST_SECONDS = 0.2


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = "kubescribe.io/cleanup"
    # The status schema is structural and keeps no `status.kopf`: kopf's own state goes in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubescribe.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubescribe.io")
    operator_settings = OperatorSettings()
    config.load_config()
    memo.settings = operator_settings
    memo.wake = asyncio.Event()
    memo.loop = asyncio.create_task(
        _reconcile_forever(
            Reconciler(operator_settings, client.ApiClient()), memo.wake, operator_settings.resync_seconds
        )
    )
    start_http_server(operator_settings.metrics_port)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await memo.loop


async def _reconcile_forever(reconciler: Reconciler, wake: asyncio.Event, resync_seconds: float) -> None:
    timeout = resync_seconds
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=timeout)
        await asyncio.sleep(BURST_SECONDS)  # one pass for a burst of changes
        wake.clear()
        timeout = resync_seconds
        try:
            next_expiry = await asyncio.to_thread(reconciler.reconcile)
        except Exception:
            metrics.reconcile_errors.inc()
            log.exception("reconcile pass failed")
            continue
        if next_expiry is not None:
            timeout = min(resync_seconds, next_expiry)


@kopf.on.event(GROUP, VERSION, PLURAL)
@kopf.on.event("batch", "v1", "jobs", labels=RUNNER_LABELS)
@kopf.on.event("", "v1", "pods", labels=RUNNER_LABELS)
async def changed(memo: kopf.Memo, **_: Any) -> None:
    memo.wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    tj = dict(body)
    await asyncio.to_thread(_cancel, tj)
    await asyncio.to_thread(_delete_objects, tj, memo.settings)


def _cancel(tj: dict[str, Any]) -> None:
    """Stops the runner (deleting its Job stops its pods) and records the cancellation of an unfinished job."""
    metadata, status = tj["metadata"], tj.get("status") or {}
    with contextlib.suppress(ApiException):
        client.BatchV1Api().delete_namespaced_job(
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
            client.CustomObjectsApi().patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], patch
            )


def _delete_objects(tj: dict[str, Any], settings: OperatorSettings) -> None:
    """The job's transcripts, and its source when it was uploaded for it. A job whose spec the operator cannot
    read never ran, so nothing was written for it."""
    try:
        doomed = builders.owned_objects(tj, settings)
    except ValidationError:
        return
    store = s3.client(
        settings.s3_endpoint, settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()
    )
    for name, keys in doomed.items():
        try:
            errors = list(store.remove_objects(name, [DeleteObject(key) for key in keys]))
        except S3Error as error:
            if error.code == "NoSuchBucket":  # nothing was written there
                continue
            raise
        for failure in errors:
            log.warning("could not delete s3://%s/%s: %s", name, failure.name, failure.code)
