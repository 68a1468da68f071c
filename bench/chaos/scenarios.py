"""The scenarios of `make chaos`. Each submits real jobs (real speech, real faster-whisper), injects its faults
while they run, waits for every job to finish, and returns its tally (bench.chaos.ledger) with the faults it
injected and what remained once the jobs' TTL had passed."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from minio import Minio

from bench import kube
from bench.chaos import ledger
from bench.chaos.faults import Faults, running_pid
from kubescribe.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from localcluster.cluster import NODES, ClusterState, LocalCluster

log = logging.getLogger(__name__)

AUDIO_BUCKET = "audio"
OUTPUTS_BUCKET = "transcripts"
TTL_SECONDS = 20
FINISH_TIMEOUT_SECONDS = 1800.0
SPEECH = "The harbour light turns every night, and the ships come home before the storm."
NODE_DOWN_TOLERATION_SECONDS = 10
"""Runner pods of the node scenario leave a failed node after this, instead of Kubernetes' default 300 s."""
NODE_DOWN_SECONDS = 300.0
"""The failed node stays down this long at most once the other faults are done, or until every job finished."""


@dataclass
class Lab:
    cluster: LocalCluster
    state: ClusterState
    api: client.ApiClient
    s3: Minio
    faults: Faults
    env: dict[str, str]
    speech: Path

    def namespace(self, name: str) -> str:
        kube.create_namespace(self.api, name)
        self.s3.fput_object(AUDIO_BUCKET, f"{name}/chaos/speech.wav", str(self.speech))
        return name

    def job(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "source": {"s3": {"bucket": AUDIO_BUCKET, "key": f"{namespace}/chaos/speech.wav"}},
                "model": "tiny.en",
                "language": "en",
                "outputs": {"formats": ["txt", "json"]},
                "resources": {"gpu": 0},
                "backoffLimit": 4,
                "ttlSecondsAfterFinished": TTL_SECONDS,
                **spec,
            },
        }

    def submit(self, jobs: list[dict[str, Any]]) -> list[str]:
        """Creates the jobs at once, twenty at a time, as a script would."""
        custom = client.CustomObjectsApi(self.api)

        def create(tj: dict[str, Any]) -> str:
            custom.create_namespaced_custom_object(GROUP, VERSION, tj["metadata"]["namespace"], PLURAL, tj)
            return str(tj["metadata"]["name"])

        with ThreadPoolExecutor(max_workers=20) as pool:
            return list(pool.map(create, jobs))

    def submit_with_kubectl(self, jobs: list[dict[str, Any]]) -> list[str]:
        """Creates the jobs with one `kubectl create -f` of a List, as a user with many files would."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
            yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": jobs}, manifest)
            manifest.flush()
            kube.run(self.env, "kubectl", "create", "-f", manifest.name)
        return [tj["metadata"]["name"] for tj in jobs]


@dataclass
class Run:
    """One scenario's jobs under watch, and the faults injected meanwhile."""

    lab: Lab
    namespace: str
    names: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    book: ledger.Ledger | None = None

    def fault(self, description: str | None) -> None:
        if description:
            log.info("%s: %s", self.namespace, description)
            self.faults.append(f"{time.monotonic() - self.started:6.1f} s  {description}")

    def unfinished(self) -> int:
        assert self.book is not None
        return self.book.unfinished(self.names)

    def result(self) -> dict[str, Any]:
        assert self.book is not None
        waited = ledger.wait_until_finished(self.book, self.names, FINISH_TIMEOUT_SECONDS)
        counts = ledger.tally(self.book, self.names)
        self.book.stop()
        time.sleep(TTL_SECONDS + 15)  # the TTL, then the finalizer's clean-up
        return {
            **counts,
            "seconds_to_finish": round(time.monotonic() - self.started - TTL_SECONDS - 15, 1),
            "finish_wait_seconds": round(waited, 1),
            "faults": self.faults,
            "left_after_ttl": ledger.leftovers(self.lab.api, self.lab.s3, self.namespace, OUTPUTS_BUCKET),
        }


@contextmanager
def scenario(lab: Lab, namespace: str) -> Iterator[Run]:
    run = Run(lab, lab.namespace(namespace))
    run.book = ledger.Ledger(namespace, lab.s3)
    run.book.start(lab.api)
    try:
        yield run
    finally:
        run.book.stop()


def _while_running(run: Run, inject: Callable[[], None], gap: tuple[float, float], times: int) -> None:
    """Injects a fault `times` times at random moments `gap` seconds apart, as long as jobs are unfinished."""
    for _ in range(times):
        time.sleep(run.lab.faults.random.uniform(*gap))
        if not run.unfinished():
            run.fault("all jobs finished: no more faults")
            return
        inject()


def operator_killed(lab: Lab, jobs: int) -> dict[str, Any]:
    """Jobs while the operator is SIGKILLed (its container restarted by the node agent) and its pod deleted (a
    new one started by its Deployment), at random moments."""
    with scenario(lab, "chaos-operator") as run:
        run.names = lab.submit([lab.job(run.namespace, f"op-{i:04d}") for i in range(jobs)])
        kills = 0

        def inject() -> None:
            nonlocal kills
            kills += 1
            fault = lab.faults.delete_operator_pod if kills % 3 == 0 else lab.faults.kill_operator
            run.fault(fault())
            run.fault(f"a new operator process runs {lab.faults.wait_operator_replaced():.1f} s later")

        _while_running(run, inject, (3, 15), 8)
        return run.result()


def runners_killed(lab: Lab, jobs: int) -> dict[str, Any]:
    """A node failed with its containers while runners run on it (Kubernetes evicts its pods and their Jobs start
    them again on the other node), then runner pods SIGKILLed and deleted mid-transcription."""
    tolerations = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": NODE_DOWN_TOLERATION_SECONDS}
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    ]
    node = NODES[0]
    with scenario(lab, "chaos-runners") as run:
        run.names = lab.submit(
            [
                lab.job(run.namespace, f"run-{i:04d}", resources={"gpu": 0, "tolerations": tolerations})
                for i in range(jobs)
            ]
        )
        lab.faults.wait_for_runner_on(run.namespace, node)
        run.fault(lab.faults.fail_node(node))
        turn = 0

        def inject() -> None:
            nonlocal turn
            turn += 1
            fault = lab.faults.kill_runner if turn % 2 else lab.faults.delete_runner
            run.fault(fault(run.namespace) or "no runner running: nothing done")

        _while_running(run, inject, (4, 10), 10)
        assert run.book is not None
        ledger.wait_until_finished(run.book, run.names, NODE_DOWN_SECONDS)
        run.fault(f"{run.unfinished()} jobs unfinished as the node comes back")
        run.fault(lab.faults.restore_node(node))
        return run.result()


def control_plane_restarted(lab: Lab, jobs: int) -> dict[str, Any]:
    """kube-apiserver and etcd SIGKILLed together and started again, twice, while jobs run."""
    with scenario(lab, "chaos-apiserver") as run:
        run.names = lab.submit([lab.job(run.namespace, f"api-{i:04d}") for i in range(jobs)])

        def inject() -> None:
            run.fault(lab.faults.crash_control_plane())
            time.sleep(10)
            run.fault(lab.faults.restart_control_plane())

        _while_running(run, inject, (10, 20), 2)
        return run.result()


def store_stopped(lab: Lab, jobs: int) -> dict[str, Any]:
    """MinIO stopped for 30 s while jobs run."""
    with scenario(lab, "chaos-store") as run:
        run.names = lab.submit([lab.job(run.namespace, f"s3-{i:04d}") for i in range(jobs)])

        def inject() -> None:
            run.fault(lab.faults.stop_store())
            time.sleep(30)
            run.fault(lab.faults.start_store())

        _while_running(run, inject, (8, 12), 1)
        return run.result()


def load(lab: Lab, jobs: int) -> dict[str, Any]:
    """Many jobs created at once with kubectl, a tenth of them at a higher priority: the order in which the
    operator admits them, its memory, and the API server's request rate while the queue drains."""
    with scenario(lab, "chaos-load") as run:
        manifests = [lab.job(run.namespace, f"load-{i:04d}", priority=100 if i % 10 == 9 else 0) for i in range(jobs)]
        sampler = Sampler(lab)
        sampler.start()
        run.names = lab.submit_with_kubectl(manifests)
        result = run.result()
        sampler.stop()
        high = {tj["metadata"]["name"] for tj in manifests if tj["spec"]["priority"] > 0}
        return {**result, **sampler.summary(), "priority_order": admission_order(run, high)}


def admission_order(run: Run, high: set[str]) -> dict[str, Any]:
    """How many ordinary jobs were admitted before the last high-priority one: those admitted while the
    high-priority jobs were still being created can be ahead of them, no more."""
    assert run.book is not None
    admitted = sorted(run.book.first_seen.items(), key=lambda item: item[1])
    order = [name for name, _ in admitted]
    last_high = max((order.index(name) for name in high if name in order), default=-1)
    ordinary_before = sum(1 for name in order[: last_high + 1] if name not in high)
    return {"high_priority_jobs": len(high), "ordinary_admitted_before_last_high": ordinary_before}


class Sampler:
    """Samples the operator's resident memory and the API server's request count every second."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.rss: list[int] = []
        self.requests: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._sample, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _sample(self) -> None:
        while not self.stopping.wait(1):
            pid = next((pid for pod in self.lab.faults.operator_pods() if (pid := running_pid(pod))), None)
            if pid:
                self.rss.append(_rss_bytes(pid))
            total = apiserver_requests(self.lab.env)
            if total is not None:
                self.requests.append((time.monotonic(), total))

    def summary(self) -> dict[str, Any]:
        rates = [
            (b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(self.requests, self.requests[1:], strict=False) if b[0] > a[0]
        ]
        return {
            "operator_rss_mib": {
                "max": round(max(self.rss, default=0) / 2**20, 1),
                "last": round(self.rss[-1] / 2**20, 1) if self.rss else None,
            },
            "apiserver_requests_per_second": {
                "mean": round(sum(rates) / len(rates), 1) if rates else None,
                "max": round(max(rates), 1) if rates else None,
            },
        }


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def apiserver_requests(env: dict[str, str]) -> float | None:
    """The API server's count of requests served so far (apiserver_request_total)."""
    try:
        metrics = subprocess.run(
            ["kubectl", "get", "--raw", "/metrics"], env=env, capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("apiserver_request_total{")
    )
