"""Progress and result reports into the TranscriptionJob's status subresource.

Reporting is best effort: a failed report is logged and the transcription goes on; the final one is tried a few
times, and the result also goes into the termination message, where the operator finds it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, Progress, Result

log = logging.getLogger(__name__)

Patch = Callable[[dict[str, Any]], None]
"""Applies a JSON merge patch to the job's status subresource."""

MAX_RUNNING_PERCENT = 99.9
PATCH_TIMEOUT_SECONDS = 10
FINAL_RETRY_SECONDS = (1.0, 2.0, 4.0)
"""Pauses before the final report is sent again; the termination message carries the result regardless."""


def status_patch(name: str, namespace: str) -> Patch:
    from kubernetes import client  # noqa: PLC0415 (only runs that report need the client)

    from kubescribe import kube  # noqa: PLC0415

    api = client.CustomObjectsApi(client.ApiClient(kube.configuration()))

    def patch(body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",
            _request_timeout=PATCH_TIMEOUT_SECONDS,
        )

    return patch


class ProgressReporter:
    """Turns "this much audio is done" into status reports, at most one per `interval` seconds."""

    def __init__(
        self,
        patch: Patch | None,
        duration: float,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._patch = patch
        self._duration = duration
        self._clock = clock
        self._interval = interval
        self._sleep = sleep
        self._started = clock()
        self._last_report: float | None = None

    def update(self, processed: float) -> None:
        now = self._clock()
        if self._last_report is not None and now - self._last_report < self._interval:
            return
        self._last_report = now
        processed = min(max(processed, 0.0), self._duration)
        fraction = processed / self._duration
        eta = (now - self._started) * (1 - fraction) / fraction if fraction else None
        self._send(
            Progress(
                percent=min(round(fraction * 100, 2), MAX_RUNNING_PERCENT),
                processed_seconds=round(processed, 3),
                duration_seconds=round(self._duration, 3),
                eta_seconds=None if eta is None else round(eta, 1),
            )
        )

    def finish(self, result: Result) -> None:
        """The final report: always sent, whatever the throttle says."""
        duration = round(self._duration, 3)
        done = Progress(percent=100, processed_seconds=duration, duration_seconds=duration, eta_seconds=0)
        if self._patch is not None:
            deliver(self._patch, {"status": {"progress": _dump(done), "result": _dump(result)}}, self._sleep)

    def _send(self, progress: Progress) -> None:
        if self._patch is not None:
            send(self._patch, {"status": {"progress": _dump(progress)}})


def send(patch: Patch, body: dict[str, Any]) -> bool:
    """Whether the report arrived."""
    try:
        patch(body)
    except Exception:
        log.warning("reporting to the status failed", exc_info=True)
        return False
    return True


def deliver(patch: Patch, body: dict[str, Any], sleep: Callable[[float], None] = time.sleep) -> bool:
    """A final report: sent again after each of FINAL_RETRY_SECONDS while it does not arrive. Whether it arrived."""
    for pause in (*FINAL_RETRY_SECONDS, None):
        if send(patch, body):
            return True
        if pause is not None:
            sleep(pause)
    return False


def _dump(model: Progress | Result) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
