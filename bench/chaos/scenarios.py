"""The scenarios of `make chaos`. Each submits real jobs (real speech, real faster-whisper), injects its faults
while they run, waits for every job to finish, and returns its tally (bench.chaos.ledger) with the faults it
injected and what remained once the jobs' TTL had passed."""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from minio import Minio

from bench import kube
from bench.chaos import ledger
from bench.chaos.faults import OPERATOR_NAMESPACE, Faults, running_pid
from kubescribe.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from kubescribe.gateway.access.keys import create_key
from kubescribe.gateway.stores.objects import incomplete_uploads
from localcluster.cluster import NODES, ClusterState, LocalCluster

log = logging.getLogger(__name__)

AUDIO_BUCKET = "audio"
KEYS_SECRET = "kubescribe-api-keys"  # noqa: S105 - a name
UPLOAD_FORM = {"model": "tiny.en", "language": "en", "formats": "txt,json"}
OUTPUTS_BUCKET = "transcripts"
TTL_SECONDS = 20
FINISH_TIMEOUT_SECONDS = 1800.0
SECONDS_PER_JOB = 10.0
"""The wait for a scenario's jobs to finish: FINISH_TIMEOUT_SECONDS, and this much more per job (two cores drain
about one job every 4.5 s)."""
SPEECH = "The harbour light turns every night, and the ships come home before the storm."
STREAMS = 5
"""Jobs of the control plane scenario submitted through the gateway and followed through its event streams."""
UPLOADS_PER_KUBECTL_JOBS = 5
"""The load scenario uploads one job through the gateway, all at once, for every five it creates with kubectl."""
FINAL_PHASES = ("Succeeded", "Failed", "Cancelled")
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
    gateway_url: str
    upload: Path
    """A longer recording for uploads through the gateway: the speech, then silence (several parts of a multipart
    upload)."""

    @contextmanager
    def gateway(self, namespace: str) -> Iterator[httpx.Client]:
        """A client of the gateway with a new API key for `namespace`, once the gateway takes it."""
        key = create_key(client.CoreV1Api(self.api), OPERATOR_NAMESPACE, KEYS_SECRET, namespace, "chaos")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=self.gateway_url, headers=headers, timeout=httpx.Timeout(120)) as http:
            deadline = time.monotonic() + 120  # the gateway may be starting, and reads new keys in the background
            while not _answers_200(http, "/v1/jobs"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not take the new API key within 120 s")
                time.sleep(1)
            yield http

    def post_upload(self, http: httpx.Client, recording: Path | None = None) -> tuple[str, str | None, str | None]:
        """One upload (of `recording`, else the long one) as a job: its outcome (the HTTP status, or the transport
        error), the job's id, and the answer's Retry-After."""
        try:
            with (recording or self.upload).open("rb") as audio:
                response = http.post("/v1/jobs", files={"file": ("talk.wav", audio, "audio/wav")}, data=UPLOAD_FORM)
        except httpx.TransportError as error:
            return type(error).__name__, None, None
        job = response.json().get("id") if response.status_code == 202 else None
        return str(response.status_code), job, response.headers.get("Retry-After")

    def upload_objects(self, namespace: str) -> list[str]:
        listed = self.s3.list_objects(AUDIO_BUCKET, prefix=f"{namespace}/uploads/", recursive=True)
        return [item.object_name for item in listed]

    def orphaned_uploads(self, namespace: str) -> int:
        """Uploaded objects (`<namespace>/uploads/<job id>/audio`) whose job does not exist."""
        jobs = set(ledger.jobs_by_name(self.api, namespace))
        return sum(1 for key in self.upload_objects(namespace) if key.split("/")[2] not in jobs)

    def incomplete_uploads(self, namespace: str) -> list[str]:
        found = incomplete_uploads(self.s3, AUDIO_BUCKET)
        return [upload.key for upload in found if upload.key.startswith(f"{namespace}/uploads/")]

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


def _answers_200(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == 200
    except httpx.TransportError:
        return False


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

    def result(self, gateway: httpx.Client | None = None) -> dict[str, Any]:
        """The tally once every job has finished, and what was left once their TTL had passed. Jobs submitted
        through the gateway keep the gateway's TTL: when `gateway` is given, every job is deleted through it."""
        assert self.book is not None
        waited = ledger.wait_until_finished(self.book, self.names, finish_timeout(len(self.names)))
        finished = time.monotonic() - self.started
        counts = ledger.tally(self.book, self.names)
        self.book.stop()
        if gateway is not None:
            for name in self.names:
                _delete_through(gateway, name)
        time.sleep(TTL_SECONDS + 15)  # the TTL, then the finalizer's clean-up
        return {
            **counts,
            "seconds_to_finish": round(finished, 1),
            "finish_wait_seconds": round(waited, 1),
            "faults": self.faults,
            "left_after_ttl": ledger.leftovers(self.lab.api, self.lab.s3, self.namespace, OUTPUTS_BUCKET),
        }


def _delete_through(gateway: httpx.Client, job: str, tries: int = 10) -> None:
    """Deletes the job through the gateway, as a client would: again, a second later, while it is unavailable."""
    for _ in range(tries):
        with contextlib.suppress(httpx.TransportError):
            if gateway.delete(f"/v1/jobs/{job}").status_code in (202, 404):
                return
        time.sleep(1)
    log.warning("the gateway did not delete job %s", job)


def finish_timeout(jobs: int) -> float:
    return FINISH_TIMEOUT_SECONDS + SECONDS_PER_JOB * jobs


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
    """kube-apiserver and etcd SIGKILLed together and started again, twice, while jobs run and clients follow
    some of them through the gateway's event streams."""
    with scenario(lab, "chaos-apiserver") as run, lab.gateway(run.namespace) as http:
        run.names = lab.submit([lab.job(run.namespace, f"api-{i:04d}") for i in range(jobs)])
        uploaded = [lab.post_upload(http, lab.speech)[1] for _ in range(STREAMS)]
        run.names += [job for job in uploaded if job]
        followers = [EventFollower(http, name) for name in run.names[-STREAMS:]]
        for follower in followers:
            follower.start()

        def inject() -> None:
            run.fault(lab.faults.crash_control_plane())
            time.sleep(10)
            run.fault(lab.faults.restart_control_plane())

        _while_running(run, inject, (10, 20), 2)
        for follower in followers:
            follower.join(timeout=FINISH_TIMEOUT_SECONDS)
        result = run.result(http)
        return {
            **result,
            "event_streams": {
                "followed": len(followers),
                "ended_with_the_final_phase": sum(1 for f in followers if f.final_phase in FINAL_PHASES),
                "reconnections": sum(f.reconnections for f in followers),
                "why": dict(sum((f.refusals for f in followers), Counter())),
            },
        }


class EventFollower(threading.Thread):
    """Follows one job's Server-Sent Events until `end`, reconnecting with Last-Event-ID when the stream breaks."""

    def __init__(self, http: httpx.Client, job: str) -> None:
        super().__init__(daemon=True)
        self.http, self.job = http, job
        self.final_phase: str | None = None
        self.reconnections = 0
        self.refusals: Counter[str] = Counter()
        self.last_event_id: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + FINISH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
            try:
                with self.http.stream("GET", f"/v1/jobs/{self.job}/events", headers=headers) as stream:
                    if stream.status_code == 200 and self._read(stream):
                        return
                    self.refusals[str(stream.status_code)] += 1
            except httpx.HTTPError as error:
                self.refusals[type(error).__name__] += 1
            self.reconnections += 1
            time.sleep(2)

    def _read(self, stream: httpx.Response) -> bool:
        """Reads events until `end` (True) or the stream closes (False)."""
        event = None
        for line in stream.iter_lines():
            if line.startswith("id: "):
                self.last_event_id = line.removeprefix("id: ")
            elif line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event in ("status", "end"):
                self.final_phase = json.loads(line.removeprefix("data: ")).get("phase") or self.final_phase
                if event == "end":
                    return True
        return False


def store_stopped(lab: Lab, jobs: int) -> dict[str, Any]:
    """MinIO stopped for 30 s while jobs run and uploads stream in through the gateway: the runners retry, the
    gateway answers 503 with Retry-After while the store is down and accepts again after."""
    with scenario(lab, "chaos-store") as run, lab.gateway(run.namespace) as http:
        run.names = lab.submit([lab.job(run.namespace, f"s3-{i:04d}") for i in range(jobs)])
        answers: list[tuple[float, str, str | None, str | None]] = []
        stop = threading.Event()

        def keep_uploading() -> None:
            while not stop.is_set():
                started = time.monotonic()
                answers.append((started, *lab.post_upload(http)))

        uploader = threading.Thread(target=keep_uploading, daemon=True)
        uploader.start()
        time.sleep(8)
        run.fault(lab.faults.stop_store())
        down = time.monotonic()
        time.sleep(30)
        run.fault(lab.faults.start_store())
        up = time.monotonic()
        time.sleep(15)
        stop.set()
        uploader.join()
        run.names += [job for _, _, job, _ in answers if job]
        unavailable = [retry for _, outcome, _, retry in answers if outcome == "503"]
        orphans = lab.orphaned_uploads(run.namespace)
        result = run.result(http)
        return {
            **result,
            "uploads_begun_while_the_store_was_down": dict(Counter(o for t, o, _, _ in answers if down <= t < up)),
            "uploads_begun_after_it_came_back": dict(Counter(o for t, o, _, _ in answers if t >= up)),
            "answers_503_with_retry_after": f"{sum(1 for retry in unavailable if retry)} of {len(unavailable)}",
            "incomplete_multipart_uploads_left": len(lab.incomplete_uploads(run.namespace)),
            "upload_objects_without_a_job": orphans,
            "upload_objects_left_once_the_jobs_were_deleted": len(lab.upload_objects(run.namespace)),
        }


def gateway_killed(lab: Lab, uploads: int) -> dict[str, Any]:
    """The gateway SIGKILLed while uploads stream in at once: no job for an upload that did not finish, and nothing
    left in the store for it once the gateway is back."""
    with scenario(lab, "chaos-uploads") as run, lab.gateway(run.namespace) as http:
        with ThreadPoolExecutor(max_workers=uploads) as pool:
            futures = [pool.submit(lab.post_upload, http) for _ in range(uploads)]
            deadline = time.monotonic() + 120
            while len(lab.incomplete_uploads(run.namespace)) < uploads // 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            begun = len(lab.incomplete_uploads(run.namespace))
            run.fault(f"SIGKILL gateway process {lab.faults.kill_gateway()} with {begun} multipart uploads begun")
            outcomes = [future.result() for future in futures]
        left_at_kill = len(lab.incomplete_uploads(run.namespace))
        deadline = time.monotonic() + 300
        while lab.incomplete_uploads(run.namespace) and time.monotonic() < deadline:
            time.sleep(2)
        run.fault(f"incomplete uploads gone {time.monotonic() - deadline + 300:.0f} s after the kill")
        accepted = [job for _, job, _ in outcomes if job]
        run.names = accepted
        jobs = set(ledger.jobs_by_name(lab.api, run.namespace))
        orphans = lab.orphaned_uploads(run.namespace)
        result = run.result(http)
        return {
            **result,
            "uploads": uploads,
            "upload_outcomes": dict(Counter(outcome for outcome, _, _ in outcomes)),
            "jobs_for_uploads_that_did_not_finish": len(jobs - set(accepted)),
            "incomplete_multipart_uploads_after_the_kill": left_at_kill,
            "incomplete_multipart_uploads_left": len(lab.incomplete_uploads(run.namespace)),
            "upload_objects_without_a_job": orphans,
            "upload_objects_left_once_the_jobs_were_deleted": len(lab.upload_objects(run.namespace)),
        }


def load(lab: Lab, jobs: int) -> dict[str, Any]:
    """Many jobs created at once with kubectl, a tenth of them at a higher priority, and a fifth as many uploaded
    through the gateway at once: the order in which the operator admits them, the operator's and the gateway's
    memory, the API server's request rate, and the gateway's job reads while the queue drains."""
    with scenario(lab, "chaos-load") as run, lab.gateway(run.namespace) as http:
        manifests = [lab.job(run.namespace, f"load-{i:04d}", priority=100 if i % 10 == 9 else 0) for i in range(jobs)]
        sampler = Sampler(lab)
        sampler.start()
        uploads = max(1, jobs // UPLOADS_PER_KUBECTL_JOBS)
        with ThreadPoolExecutor(max_workers=uploads) as pool:
            posted = [pool.submit(lab.post_upload, http, lab.speech) for _ in range(uploads)]
            run.names = lab.submit_with_kubectl(manifests)
            outcomes = [future.result() for future in posted]
        uploaded = [job for _, job, _ in outcomes if job]
        run.names += uploaded
        reads = JobReads(http, uploaded, lab.faults.random.choice)  # the gateway serves the jobs submitted to it
        reads.start()
        assert run.book is not None
        ledger.wait_until_finished(run.book, run.names, finish_timeout(len(run.names)))
        reads.stop()  # before the jobs are deleted
        result = run.result(http)
        sampler.stop()
        high = {tj["metadata"]["name"] for tj in manifests if tj["spec"]["priority"] > 0}
        return {
            **result,
            "concurrent_uploads": uploads,
            "upload_outcomes": dict(Counter(outcome for outcome, _, _ in outcomes)),
            **sampler.summary(),
            "gateway_job_reads": reads.summary(),
            "priority_order": admission_order(run, high),
        }


class JobReads:
    """Reads random jobs through the gateway, one after another, timing each."""

    def __init__(self, http: httpx.Client, names: list[str], choose: Callable[[list[str]], str]) -> None:
        self.http, self.names, self.choose = http, names, choose
        self.seconds: list[float] = []
        self.failures: Counter[str] = Counter()
        self.stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _read(self) -> None:
        while not self.stopping.wait(0.05):
            started = time.monotonic()
            try:
                response = self.http.get(f"/v1/jobs/{self.choose(self.names)}")
            except httpx.TransportError as error:
                self.failures[type(error).__name__] += 1
                continue
            if response.status_code == 200:
                self.seconds.append(time.monotonic() - started)
            else:
                self.failures[str(response.status_code)] += 1

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.seconds)
        if len(ordered) < 2:
            return {"reads": len(ordered), "failures": dict(self.failures)}
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        return {
            "reads": len(ordered),
            "p50_ms": round(cuts[49] * 1000, 1),
            "p99_ms": round(cuts[98] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1),
            "failures": dict(self.failures),
        }


def admission_order(run: Run, high: set[str]) -> dict[str, Any]:
    """Ordinary jobs admitted while a higher-priority job already existed and waited: the queue's inversions."""
    assert run.book is not None
    with run.book.lock:
        admitted, created = dict(run.book.first_seen), dict(run.book.created)
    waits = [(created[name], admitted[name]) for name in high if name in created and name in admitted]
    inversions = sum(
        1
        for name, at in admitted.items()
        if name not in high and any(arrived < at < admission for arrived, admission in waits)
    )
    return {"high_priority_jobs": len(high), "ordinary_jobs_admitted_while_one_waited": inversions}


class Sampler:
    """Samples the operator's and the gateway's resident memory and the API server's request count every second."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.rss: list[int] = []
        self.gateway_rss: list[int] = []
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
            if gateway := self.lab.faults.gateway_pid():
                self.gateway_rss.append(_rss_bytes(gateway))
            total = apiserver_requests(self.lab.env)
            if total is not None:
                self.requests.append((time.monotonic(), total))

    def summary(self) -> dict[str, Any]:
        rates = [
            (b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(self.requests, self.requests[1:], strict=False) if b[0] > a[0]
        ]
        return {
            "operator_rss_mib": _mib(self.rss),
            "gateway_rss_mib": _mib(self.gateway_rss),
            "apiserver_requests_per_second": {
                "mean": round(sum(rates) / len(rates), 1) if rates else None,
                "max": round(max(rates), 1) if rates else None,
            },
        }


def _mib(samples: list[int]) -> dict[str, float | None]:
    return {
        "max": round(max(samples, default=0) / 2**20, 1),
        "last": round(samples[-1] / 2**20, 1) if samples else None,
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
