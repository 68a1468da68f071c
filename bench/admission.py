"""Admission latency: many jobs created at once, each timed from just before its create call to the moment
its runner pod is first seen Running. The baseline is the same number of plain batch/v1 Jobs with the same
runner container, created straight into the same cluster, without the operator."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, TranscriptionJobSpec
from kubescribe.contract import ENV_SPEC
from kubescribe.operator.builders import JOB_LABEL

JOBS = 200
TIMEOUT_SECONDS = 600.0
CREATE_THREADS = 20
MISSING_KEY = "bench/does-not-exist.wav"
"""Under the jobs' namespace."""
RUNNER_SELECTOR = "app.kubernetes.io/component=runner"
BASELINE_LABEL = "bench.kubescribe.io/name"

log = logging.getLogger(__name__)


@dataclass
class Burst:
    """What one burst of creations measured; times are `time.monotonic()` seconds."""

    jobs: int
    submitted: dict[str, float] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)
    """When the job's pod was first seen at all: the admission path up to the pod, before the node starts it."""
    running: dict[str, float] = field(default_factory=dict)
    seen_after_exit: set[str] = field(default_factory=set)
    create_errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        running = latencies(self.submitted, self.running)
        return {
            "jobs": self.jobs,
            "created": len(self.submitted) - len(self.create_errors),
            "reached_running": len(running),
            "timeout_seconds": TIMEOUT_SECONDS,
            "first_seen_already_exited": len(self.seen_after_exit),
            "submission_spread_seconds": round(max(self.submitted.values()) - min(self.submitted.values()), 3),
            "create_errors": self.create_errors[:5],
            "to_running": percentiles(running),
            "to_pod_created": percentiles(latencies(self.submitted, self.created)),
        }


def latencies(start: dict[str, float], end: dict[str, float]) -> list[float]:
    return sorted(end[name] - start[name] for name in end if name in start)


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    found = {"min": values[0], "p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": values[-1]}
    return {key: round(value, 3) for key, value in found.items()}


class PodWatcher:
    """Watches pods matching a selector and records, per value of `key_label`, when one is first seen running.
    Each pod is deleted as soon as it is seen running, so that hundreds of runners do not load the machine."""

    def __init__(self, api: client.ApiClient, namespace: str, selector: str, key_label: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace, self.selector, self.key_label = namespace, selector, key_label
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.seen_after_exit: set[str] = set()
        self.listed = threading.Event()
        self._stop = threading.Event()
        self._deleter = ThreadPoolExecutor(max_workers=4)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.listed.wait(30)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=40)
        self._deleter.shutdown(wait=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
                for pod in pods.items:
                    self._seen(pod)
                self.listed.set()
                stream = watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=pods.metadata.resource_version,
                    timeout_seconds=5,
                )
                for event in stream:
                    self._seen(event["object"])
            except Exception:  # an expired resourceVersion or a dropped connection: list again
                log.debug("pod watch restarted", exc_info=True)
                time.sleep(0.5)

    def _seen(self, pod: client.V1Pod) -> None:
        key = (pod.metadata.labels or {}).get(self.key_label)
        if key is None or key in self.running:
            return
        self.created.setdefault(key, time.monotonic())
        states = [status.state for status in pod.status.container_statuses or []]
        if pod.status.phase == "Running" or any(state.running for state in states):
            self.running[key] = time.monotonic()
        elif pod.status.phase in ("Succeeded", "Failed") and any(state.terminated for state in states):
            self.running[key] = time.monotonic()
            self.seen_after_exit.add(key)
        else:
            return
        if not pod.metadata.deletion_timestamp:
            self._deleter.submit(self._delete, pod.metadata.name)

    def _delete(self, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise


def burst(api: client.ApiClient, namespace: str, selector: str, key_label: str, create: Callable[[str], None]) -> Burst:
    """Create `JOBS` objects at once with `create(name)` and wait until each has a running pod."""
    result = Burst(JOBS)
    watcher = PodWatcher(api, namespace, selector, key_label)
    watcher.start()
    names = [f"bench-{number:03d}" for number in range(JOBS)]

    def submit(name: str) -> None:
        result.submitted[name] = time.monotonic()
        try:
            create(name)
        except ApiException as error:
            result.create_errors.append(f"{name}: {error.status} {error.reason}")

    try:
        with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
            list(pool.map(submit, names))
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while len(watcher.running) < JOBS and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        watcher.stop()
    result.created, result.running = dict(watcher.created), dict(watcher.running)
    result.seen_after_exit = set(watcher.seen_after_exit)
    return result


def job_spec(bucket: str, output_bucket: str, namespace: str) -> TranscriptionJobSpec:
    """A CPU job of `namespace` whose source does not exist: the runner starts, then exits at once with
    SourceNotFound. Its objects are under the namespace's own prefix, where the storage policy lets it."""
    return TranscriptionJobSpec.model_validate(
        {
            "source": {"s3": {"bucket": bucket, "key": f"{namespace}/{MISSING_KEY}"}},
            "model": "tiny.en",
            "outputs": {"formats": ["txt"], "s3": {"bucket": output_bucket, "prefix": f"{namespace}/bench-admission/"}},
            "resources": {"gpu": 0},
            "backoffLimit": 0,
        }
    )


def transcription_jobs(api: client.ApiClient, namespace: str, spec: TranscriptionJobSpec) -> Burst:
    custom = client.CustomObjectsApi(api)
    body = spec.model_dump(mode="json", by_alias=True, exclude_none=True)

    def create(name: str) -> None:
        tj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TranscriptionJob", "metadata": {"name": name}}
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {**tj, "spec": body})

    return burst(api, namespace, RUNNER_SELECTOR, JOB_LABEL, create)


def plain_jobs(api: client.ApiClient, namespace: str, spec: TranscriptionJobSpec, s3_env: dict[str, str]) -> Burst:
    """The baseline: batch/v1 Jobs with the runner container the operator would give the same spec."""
    batch = client.BatchV1Api(api)
    env = [{"name": ENV_SPEC, "value": spec.model_dump_json(by_alias=True, exclude_none=True)}]
    env += [{"name": key, "value": value} for key, value in s3_env.items()]
    container = {"name": "runner", "image": "kubescribe", "command": ["python", "-m", "kubescribe.runner"], "env": env}

    def create(name: str) -> None:
        template = {
            "metadata": {"labels": {BASELINE_LABEL: name}},
            "spec": {"restartPolicy": "Never", "containers": [container]},
        }
        spec = {"backoffLimit": 0, "podReplacementPolicy": "Failed", "template": template}
        batch.create_namespaced_job(
            namespace, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}
        )

    return burst(api, namespace, BASELINE_LABEL, BASELINE_LABEL, create)


def delete_transcription_jobs(api: client.ApiClient, namespace: str, timeout: float = 300) -> int:
    """Delete every TranscriptionJob of the namespace and wait for the operator's finalizer; how many remain."""
    custom = client.CustomObjectsApi(api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    deadline = time.monotonic() + timeout
    remaining = JOBS
    while time.monotonic() < deadline:
        remaining = len(custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"])
        if remaining == 0:
            break
        time.sleep(2)
    return remaining
