"""`python -m kubescribe.runner.worker`: a runner pool's worker. It loads the pool's model once, claims the pool's
RunnerAssignments by creating their Leases, runs several at once through the runner's pipeline, and reports each
one's progress and outcome into the assignment's status. SIGTERM drains it: it takes nothing more and exits once
its running attempts have ended; a second SIGTERM ends it at once."""

from __future__ import annotations

import signal
import sys

# The worker is its container's PID 1, which ignores SIGTERM until it handles it: until main() takes over, SIGTERM
# ends it at once rather than while the imports below load.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

import contextlib
import contextvars
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any

from faster_whisper import WhisperModel
from kubernetes import client, watch
from pydantic import ValidationError

from kubescribe import kube
from kubescribe.api.pools import ASSIGNMENT_PLURAL, LEASE_SECONDS, POOL_LABEL
from kubescribe.api.v1alpha1 import GROUP, VERSION
from kubescribe.contract import (
    ENV_MODEL_CACHE,
    ENV_NODE_MODEL_CACHE,
    ENV_POOL,
    ENV_POOL_CONCURRENCY,
    ENV_POOL_MODEL,
    ENV_POOL_NAMESPACE,
    ENV_STORE_GRANTS,
    ENV_WORKER,
    ENV_WORKER_PORT,
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_OK,
    StoreGrants,
)
from kubescribe.logs import JsonFormatter
from kubescribe.runner.assignments import attempt_secrets, candidates, check_model, failure_status, log_fields
from kubescribe.runner.config import DEFAULT_MODEL_CACHE, Config
from kubescribe.runner.errors import Abandoned, RunnerFailure, unexpected_failure
from kubescribe.runner.health import Lifecycle, serve_health
from kubescribe.runner.leases import Lease, Leases
from kubescribe.runner.models import resolve_model
from kubescribe.runner.pipeline import run
from kubescribe.runner.report import PATCH_TIMEOUT_SECONDS, Patch, deliver, send
from kubescribe.runner.transcribe import load_model

log = logging.getLogger("kubescribe.runner.worker")

RENEW_SECONDS = LEASE_SECONDS / 3
TURN_SECONDS = 1.0
"""The longest the loop waits for news: how soon it notices SIGTERM."""
RELIST_SECONDS = 60
"""How long one watch of the assignments lasts before they are listed again, as a safety net."""
RETRY_SECONDS = 2.0
"""The pause after the watch failed, before the assignments are listed again."""
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Settings:
    pool: str
    namespace: str
    model: str
    concurrency: int
    worker: str
    model_cache: Path
    port: int
    grants: StoreGrants | None = None
    """The presigned URLs of an s3:// model."""
    node_model_cache: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        missing = [name for name in (ENV_POOL, ENV_POOL_NAMESPACE, ENV_POOL_MODEL, ENV_WORKER) if not env.get(name)]
        if missing:
            raise ValueError(f"{', '.join(missing)} must be set")
        concurrency = int(env.get(ENV_POOL_CONCURRENCY) or 1)
        if concurrency < 1:
            raise ValueError(f"{ENV_POOL_CONCURRENCY} must be at least 1")
        try:
            grants = StoreGrants.model_validate_json(env[ENV_STORE_GRANTS]) if env.get(ENV_STORE_GRANTS) else None
        except ValidationError:
            raise ValueError(f"{ENV_STORE_GRANTS} is not valid") from None
        return cls(
            pool=env[ENV_POOL],
            namespace=env[ENV_POOL_NAMESPACE],
            model=env[ENV_POOL_MODEL],
            concurrency=concurrency,
            worker=env[ENV_WORKER],
            model_cache=Path(env.get(ENV_MODEL_CACHE) or DEFAULT_MODEL_CACHE).expanduser(),
            port=int(env.get(ENV_WORKER_PORT) or DEFAULT_PORT),
            grants=grants,
            node_model_cache=env.get(ENV_NODE_MODEL_CACHE) or None,
        )


_attempt_fields: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "attempt_fields", default=MappingProxyType({})
)


class AttemptFields(logging.Filter):
    """Adds the job and attempt of the thread's attempt, if any, to each log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _attempt_fields.get().items():
            setattr(record, key, value)
        return True


class Secrets:
    """The secrets of the attempts running now, masked in every log line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hidden: list[str] = []

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._hidden))

    @contextlib.contextmanager
    def hiding(self, secrets: list[str]) -> Iterator[None]:
        with self._lock:
            self._hidden += secrets
        try:
            yield
        finally:
            with self._lock:
                for secret in secrets:
                    self._hidden.remove(secret)


def load_pool_model(settings: Settings) -> WhisperModel:
    """The pool's model, loaded once, for `concurrency` transcriptions at once. A worker has no store credentials:
    it reads an s3:// model through the presigned URLs the operator gives the pool, through the node's model cache
    where there is one."""

    def no_store() -> Any:
        raise RunnerFailure(EXIT_BAD_INPUT, "ModelNotFound", "a pool's worker has no store credentials")

    location = resolve_model(
        settings.model, settings.model_cache, no_store, settings.grants, node_cache=settings.node_model_cache
    )
    download_root = str(settings.model_cache / "huggingface")
    return load_model(location, download_root=download_root, num_workers=settings.concurrency)


class Attempt:
    """A claimed assignment: its Lease, renewed while it runs, and its status reports, which stop once it is
    abandoned (its Lease lost, its assignment deleted)."""

    def __init__(
        self,
        assignment: Mapping[str, Any],
        lease: Lease,
        leases: Leases,
        patch: Patch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.assignment = assignment
        self.name = lease.name
        self.abandoned = threading.Event()
        self._lease = lease
        self._leases = leases
        self._patch = patch
        self._clock = clock
        self._renewing = threading.Lock()
        self._renewed = clock()

    def renew(self) -> bool:
        """Whether the attempt is still this worker's; when the API did not answer, it is while its last renewal is
        within the Lease's duration."""
        return self._renew(lambda: self._clock() - self._renewed < LEASE_SECONDS)

    def still_mine(self) -> bool:
        """Whether the attempt is surely still this worker's: its Lease renewed just now."""
        return self._renew(lambda: False)

    def _renew(self, held_if_unanswered: Callable[[], bool]) -> bool:
        with self._renewing:
            if self.abandoned.is_set():
                return False
            try:
                held = self._leases.renew(self._lease)
            except Exception:
                log.warning("renewing the lease failed", extra={"assignment": self.name}, exc_info=True)
                held = held_if_unanswered()
            else:
                if held:
                    self._renewed = self._clock()
            if not held:
                self.abandon("its lease is lost")
            return held

    def abandon(self, why: str) -> None:
        if not self.abandoned.is_set():
            log.warning("abandoning the attempt: %s", why, extra={"assignment": self.name})
            self.abandoned.set()

    def report(self, body: dict[str, Any]) -> None:
        """Patches the assignment's status, as long as the attempt is this worker's."""
        if self.abandoned.is_set():
            raise Abandoned
        self._patch(body)


def run_attempt(attempt: Attempt, whisper: WhisperModel, settings: Settings, secrets: Secrets) -> None:
    """Runs the attempt to its end and reports it, as a runner pod of the job would have run it."""
    _attempt_fields.set(log_fields(attempt.assignment))
    environment = (attempt.assignment.get("spec") or {}).get("environment") or {}
    hidden = attempt_secrets(environment)
    with secrets.hiding(hidden):
        try:
            send(attempt.report, {"status": {"worker": settings.worker}})
            failure = _failure_of(attempt, environment, whisper, settings)
            if failure is not None:
                extra = {"reason": failure.reason, "exitCode": failure.exit_code}
                log.error("the attempt failed: %s", failure.message, extra=extra)
                deliver(attempt.report, failure_status(failure, hidden))
        except Abandoned:
            log.warning("the attempt was abandoned; nothing more is reported or uploaded")


def _failure_of(
    attempt: Attempt, environment: Mapping[str, str], whisper: WhisperModel, settings: Settings
) -> RunnerFailure | None:
    """Runs the attempt; why it failed, or None when it succeeded."""
    try:
        config = Config.from_env(environment)
        check_model(config.spec.model, settings.model)
        with tempfile.TemporaryDirectory(prefix="kubescribe-attempt-") as workdir:
            result = run(config, Path(workdir), attempt.report, whisper, attempt.still_mine)
    except RunnerFailure as failure:
        return failure
    except Exception as error:
        log.exception("the attempt failed unexpectedly")
        return unexpected_failure(error)
    log.info("done", extra={"outputs": result.outputs})
    return None


def assignment_patch(api: client.CustomObjectsApi, namespace: str, name: str) -> Patch:
    def patch(body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            ASSIGNMENT_PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",
            _request_timeout=PATCH_TIMEOUT_SECONDS,
        )

    return patch


Event = tuple[str, Any]
"""What the loop hears of: ("listed", the assignments), ("changed" or "deleted", an assignment), or ("finished",
the name of an attempt that ended)."""


class Worker:
    """The loop: claims assignments while there are free slots, renews the Leases of running attempts, and drains."""

    def __init__(
        self,
        *,
        settings: Settings,
        whisper: WhisperModel,
        leases: Leases,
        api: client.CustomObjectsApi,
        lifecycle: Lifecycle,
        secrets: Secrets,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self._settings = settings
        self._whisper = whisper
        self._leases = leases
        self._api = api
        self._lifecycle = lifecycle
        self._secrets = secrets
        self._clock = clock
        self._known: dict[str, Mapping[str, Any]] = {}
        self._taken: set[str] = set()
        """Assignments whose Lease was there already: another worker's, or one this worker ran before."""
        self._running: dict[str, Attempt] = {}

    def run(self) -> None:
        """Until drained."""
        next_renewal = self._clock() + RENEW_SECONDS
        while not self._lifecycle.done(len(self._running)):
            self._lifecycle.beat()
            with contextlib.suppress(queue.Empty):
                self._hear(*self.events.get(timeout=min(TURN_SECONDS, max(0.0, next_renewal - self._clock()))))
            if self._clock() >= next_renewal:
                for attempt in list(self._running.values()):
                    attempt.renew()
                next_renewal = self._clock() + RENEW_SECONDS
            self._claim()

    def _hear(self, kind: str, payload: Any) -> None:
        if kind == "listed":
            self._known = {assignment["metadata"]["name"]: assignment for assignment in payload}
            self._taken &= self._known.keys()
        elif kind == "changed":
            self._known[payload["metadata"]["name"]] = payload
        elif kind == "deleted":
            name = payload["metadata"]["name"]
            self._known.pop(name, None)
            self._taken.discard(name)
            if name in self._running:
                self._running[name].abandon("its assignment was deleted")
        elif kind == "finished":
            del self._running[payload]

    def _claim(self) -> None:
        if not self._lifecycle.ready():
            return
        for assignment in candidates(self._known.values(), self._taken | self._running.keys()):
            if len(self._running) >= self._settings.concurrency:
                return
            self._try_claim(assignment)

    def _try_claim(self, assignment: Mapping[str, Any]) -> None:
        name = assignment["metadata"]["name"]
        try:
            lease = self._leases.claim(assignment)
        except Exception:
            log.warning("claiming an assignment failed", extra={"assignment": name}, exc_info=True)
            return
        if lease is None:
            self._taken.add(name)
            return
        log.info("claimed", extra=log_fields(assignment))
        patch = assignment_patch(self._api, self._settings.namespace, name)
        attempt = Attempt(assignment, lease, self._leases, patch, self._clock)
        self._running[name] = attempt
        threading.Thread(target=self._run_attempt, args=(attempt,), name=f"attempt-{name}", daemon=True).start()

    def _run_attempt(self, attempt: Attempt) -> None:
        try:
            run_attempt(attempt, self._whisper, self._settings, self._secrets)
        finally:
            self.events.put(("finished", attempt.name))


def watch_assignments(api: client.CustomObjectsApi, settings: Settings, events: queue.Queue[Event]) -> None:
    """Tells `events` of the pool's assignments: all of them, then each change; all of them again every
    RELIST_SECONDS and after any trouble."""
    selector = f"{POOL_LABEL}={settings.pool}"
    where = (GROUP, VERSION, settings.namespace, ASSIGNMENT_PLURAL)
    while True:
        try:
            listing = api.list_namespaced_custom_object(*where, label_selector=selector)
            events.put(("listed", listing["items"]))
            changes = watch.Watch().stream(
                api.list_namespaced_custom_object,
                *where,
                label_selector=selector,
                resource_version=listing["metadata"]["resourceVersion"],
                timeout_seconds=RELIST_SECONDS,
                _request_timeout=RELIST_SECONDS + PATCH_TIMEOUT_SECONDS,
            )
            _tell(changes, events)
        except Exception:
            log.warning("watching the assignments failed; listing them again", exc_info=True)
            time.sleep(RETRY_SECONDS)


def _tell(changes: Iterable[dict[str, Any]], events: queue.Queue[Event]) -> None:
    for change in changes:
        if change["type"] == "ERROR":  # the watch expired: list again
            return
        events.put(("deleted" if change["type"] == "DELETED" else "changed", change["object"]))


def _on_sigterm(lifecycle: Lifecycle) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        if lifecycle.draining:
            log.warning("stopped again while draining: exiting now")
            os._exit(EXIT_CANCELLED)
        log.info("draining: taking no more assignments")
        lifecycle.draining = True

    return handle


def main() -> int:
    secrets = Secrets()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter({"worker": os.environ.get(ENV_WORKER, "")}, secrets))
    handler.addFilter(AttemptFields())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    try:
        settings = Settings.from_env(os.environ)
    except ValueError as error:
        log.error("the worker is not configured: %s", error)
        return EXIT_BAD_INPUT
    lifecycle = Lifecycle()
    signal.signal(signal.SIGTERM, _on_sigterm(lifecycle))
    serve_health(settings.port, lifecycle)
    try:
        with secrets.hiding(attempt_secrets(os.environ)):
            whisper = load_pool_model(settings)
    except RunnerFailure as failure:
        log.error("the pool's model cannot be loaded: %s", failure.message, extra={"reason": failure.reason})
        return failure.exit_code
    lifecycle.loaded = True
    log.info("model loaded; taking assignments", extra={"pool": settings.pool, "model": settings.model})

    api = kube.TimedApiClient(PATCH_TIMEOUT_SECONDS, kube.configuration())
    assignments = client.CustomObjectsApi(api)
    leases = Leases(client.CoordinationV1Api(api), settings.namespace, settings.worker)
    worker = Worker(
        settings=settings, whisper=whisper, leases=leases, api=assignments, lifecycle=lifecycle, secrets=secrets
    )
    watcher = threading.Thread(target=watch_assignments, args=(assignments, settings, worker.events), daemon=True)
    watcher.start()
    worker.run()
    log.info("drained")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
