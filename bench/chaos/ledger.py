"""What the cluster did with a scenario's jobs, and the tally a user reads: each job succeeded exactly once,
failed with a reason, or was lost.

A watch of the namespace's runner Jobs and pods records every runner Job created for a job and every runner pod
that ended Succeeded: a job with two runner Jobs, or two pods that both finished the work, was done twice. The
watches ride through API server restarts: they list again, and a list sees every object that still exists."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from minio import Minio

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, is_finished
from kubescribe.operator.builders import JOB_LABEL

RUNNER_SELECTOR = "app.kubernetes.io/component=runner"


@dataclass
class Ledger:
    """Per job: the runner Jobs (uids) created, the runner pods started and those that succeeded, the final status
    first seen (jobs go once their TTL passes: their outcome is recorded as it happens), and whether a succeeded
    job's transcripts were in the store when it was seen."""

    namespace: str
    s3: Minio
    runner_jobs: dict[str, set[str]] = field(default_factory=dict)
    succeeded_pods: dict[str, set[str]] = field(default_factory=dict)
    pod_starts: dict[str, set[str]] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    """When the job's first runner Job was seen (monotonic seconds): when the operator admitted it."""
    created: dict[str, float] = field(default_factory=dict)
    """When the job was first seen (monotonic seconds)."""
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs_stored: dict[str, bool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self, api: client.ApiClient) -> None:
        batch, core, custom = client.BatchV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api)
        runners = {"label_selector": RUNNER_SELECTOR}
        follows = (
            (batch.list_namespaced_job, (self.namespace,), runners, self._job),
            (core.list_namespaced_pod, (self.namespace,), runners, self._pod),
            (custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, PLURAL), {}, self._transcription),
        )
        for follow in follows:
            threading.Thread(target=self._follow, args=follow, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _follow(self, lister: Any, args: tuple[str, ...], filters: dict[str, str], record: Any) -> None:
        while not self.stopping.is_set():
            try:
                listing = lister(*args, **filters, _request_timeout=30)
                items, version = (
                    (listing["items"], listing["metadata"]["resourceVersion"])
                    if isinstance(listing, dict)
                    else (listing.items, listing.metadata.resource_version)
                )
                for item in items:
                    record(item)
                stream = watch.Watch().stream(
                    lister, *args, **filters, resource_version=version, timeout_seconds=30, _request_timeout=60
                )
                for event in stream:
                    if self.stopping.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        record(event["object"])
            except Exception:  # the API server went away or the watch expired: list again
                time.sleep(1)

    def _job(self, job: Any) -> None:
        name = (job.metadata.labels or {}).get(JOB_LABEL)
        if name:
            with self.lock:
                self.runner_jobs.setdefault(name, set()).add(job.metadata.uid)
                self.first_seen.setdefault(name, time.monotonic())

    def _pod(self, pod: Any) -> None:
        name = (pod.metadata.labels or {}).get(JOB_LABEL)
        if not name:
            return
        with self.lock:
            if pod.status.container_statuses:
                self.pod_starts.setdefault(name, set()).add(pod.metadata.uid)
            if pod.status.phase == "Succeeded":
                self.succeeded_pods.setdefault(name, set()).add(pod.metadata.uid)

    def _transcription(self, tj: dict[str, Any]) -> None:
        name, status = tj["metadata"]["name"], tj.get("status") or {}
        with self.lock:
            self.created.setdefault(name, time.monotonic())
        if not is_finished(status) or name in self.final:
            return
        stored = None
        if status.get("phase") == "Succeeded":
            outputs = (status.get("result") or {}).get("outputs") or {}
            stored = bool(outputs) and all(_exists(self.s3, uri) for uri in outputs.values())
        with self.lock:
            self.final[name] = status
            if stored is not None:
                self.outputs_stored[name] = stored

    def unfinished(self, names: list[str]) -> int:
        with self.lock:
            return sum(1 for name in names if name not in self.final)


def jobs_by_name(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    listing = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _request_timeout=60
    )
    return {tj["metadata"]["name"]: tj for tj in listing["items"]}


def wait_until_finished(book: Ledger, names: list[str], timeout: float) -> float:
    """Waits until every job has been seen finished or `timeout` passes; the seconds it took."""
    started = time.monotonic()
    while book.unfinished(names) and time.monotonic() - started < timeout:
        time.sleep(1)
    return time.monotonic() - started


def tally(book: Ledger, names: list[str]) -> dict[str, Any]:
    """The counts a user decides on: submitted, succeeded exactly once, failed with a reason, lost; and the
    evidence of anything done twice."""
    with book.lock:
        final = dict(book.final)
        stored = dict(book.outputs_stored)
        runner_jobs = {name: len(uids) for name, uids in book.runner_jobs.items()}
        succeeded_pods = {name: len(uids) for name, uids in book.succeeded_pods.items()}
        starts = {name: len(uids) for name, uids in book.pod_starts.items()}
    reasons: Counter[str] = Counter()
    succeeded, done_twice, lost = [], [], []
    for name in names:
        status = final.get(name)
        if runner_jobs.get(name, 0) > 1 or succeeded_pods.get(name, 0) > 1:
            done_twice.append(name)
        if status is None:
            lost.append(name)
        elif status.get("phase") == "Succeeded":
            succeeded.append(name)
        else:
            reasons[f"{status.get('phase')}/{status.get('reason') or 'no reason'}"] += 1
    return {
        "submitted": len(names),
        "succeeded_exactly_once": sum(1 for name in succeeded if name not in done_twice),
        "failed_with_reason": sum(count for key, count in reasons.items() if not key.endswith("/no reason")),
        "failure_reasons": dict(reasons),
        "lost": len(lost),
        "lost_jobs": lost[:10],
        "done_twice": len(done_twice),
        "done_twice_jobs": done_twice[:10],
        "succeeded_without_outputs": sum(1 for name in succeeded if not stored.get(name)),
        "runner_pods_started": sum(starts.get(name, 0) for name in names),
        "retries": sum(max(0, starts.get(name, 0) - 1) for name in names),
    }


def _exists(s3: Minio, uri: str) -> bool:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        s3.stat_object(bucket, key)
    except Exception:
        return False
    return True


def leftovers(api: client.ApiClient, s3: Minio, namespace: str, outputs_bucket: str) -> dict[str, int]:
    """What remains of a namespace's jobs once their TTL has passed: the jobs themselves, the objects the operator
    made for them, and transcripts in the store."""
    core, rbac, batch = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api), client.BatchV1Api(api)
    selector = RUNNER_SELECTOR
    listers = {
        "transcriptionjobs": lambda: jobs_by_name(api, namespace).values(),
        "secrets": lambda: core.list_namespaced_secret(namespace, label_selector=selector).items,
        "serviceaccounts": lambda: core.list_namespaced_service_account(namespace, label_selector=selector).items,
        "roles": lambda: rbac.list_namespaced_role(namespace, label_selector=selector).items,
        "rolebindings": lambda: rbac.list_namespaced_role_binding(namespace, label_selector=selector).items,
        "jobs": lambda: batch.list_namespaced_job(namespace, label_selector=selector).items,
        "pods": lambda: core.list_namespaced_pod(namespace, label_selector=selector).items,
    }
    found = {kind: len(list(lister())) for kind, lister in listers.items()}
    transcripts = s3.list_objects(outputs_bucket, prefix=f"{namespace}/", recursive=True)
    found["transcripts_in_store"] = sum(1 for _ in transcripts)
    return found
