"""One watch of every TranscriptionJob, shared by the whole gateway: a cache of the jobs (for the queued cap and
readiness) and an asyncio fan-out of each job's changes to the clients that follow it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION

log = logging.getLogger("kubescribe.gateway.watch")

Key = tuple[str, str]
Change = dict[str, Any] | None
"""The job as it is now, or None once it is gone."""
WATCH_SECONDS = 60
"""How long the API server keeps each watch open before it ends it."""
CONNECT_SECONDS = 5.0
RETRY_SECONDS = 1.0
GONE = 410


def _key(job: dict[str, Any]) -> Key:
    return job["metadata"]["namespace"], job["metadata"]["name"]


class JobWatcher:
    """The watch: a list, then changes from its resourceVersion on, resumed from the last one seen when a watch ends
    or breaks (listed again only when the API server no longer has it: 410 Gone). Each watch asks the API server to
    end it after `watch_seconds` and to send bookmarks, and gives up reading after a quarter more, so a silent
    connection is noticed. The cache is confirmed fresh by every event, bookmark and list, and by each watch the API
    server ends (it sends no bookmark while no job has changed); `staleness` says when it has not been for longer
    than `stale_after` seconds."""

    def __init__(
        self,
        api_client: client.ApiClient,
        stale_after: float = 180,
        clock: Callable[[], float] = time.monotonic,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._jobs: dict[Key, dict[str, Any]] = {}
        self._followers: dict[Key, set[asyncio.Queue[Change]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._watch = watch.Watch()
        self._stale_after, self._clock, self._watch_seconds = stale_after, clock, watch_seconds
        self._version: str | None = None
        self._confirmed_at: float | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, name="job-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._watch.stop()

    def staleness(self) -> str | None:
        """Why the cache cannot be trusted now, or None when it can."""
        if self._confirmed_at is None:
            return "the job watch has not listed the jobs yet"
        age = self._clock() - self._confirmed_at
        if age > self._stale_after:
            return f"the job watch has not been confirmed fresh for {age:.0f} s (more than {self._stale_after:g} s)"
        return None

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._jobs.values())

    @contextlib.contextmanager
    def follow(self, namespace: str, name: str) -> Iterator[asyncio.Queue[Change]]:
        """The job's latest change from now on, while the block lasts: a queue of one, whose change a newer one
        replaces, so that a follower that does not read holds one job, not every change."""
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=1)
        followers = self._followers.setdefault((namespace, name), set())
        followers.add(queue)
        try:
            yield queue
        finally:
            followers.discard(queue)
            if not followers:
                self._followers.pop((namespace, name), None)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._version is None:
                    self._relist()
                self._stream()
            except ApiException as error:
                if error.status == GONE:
                    log.info("the job watch's resourceVersion is gone; listing again")
                    self._version = None
                else:
                    self._failed(str(error.status))
            except Exception as error:
                self._failed(type(error).__name__)

    def _failed(self, why: str) -> None:
        if not self._stopping.is_set():
            log.warning("the job watch failed (%s); resuming", why)
            self._stopping.wait(RETRY_SECONDS)

    def _relist(self) -> None:
        listed = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        self._call(self._replace, {_key(job): job for job in listed["items"]})
        self._confirm(str(listed["metadata"]["resourceVersion"]))

    def _stream(self) -> None:
        """Follows changes from the last resourceVersion until the API server ends the watch."""
        for event in self._watch.stream(
            self._api.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_seconds,
            _request_timeout=(CONNECT_SECONDS, self._watch_seconds * 1.25),
        ):
            kind, job = event["type"], event["raw_object"]
            if kind == "ERROR":
                raise ApiException(status=job.get("code"), reason=job.get("reason"))
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._call(self._apply, _key(job), None if kind == "DELETED" else job)
            self._confirm(str(job["metadata"]["resourceVersion"]))
        assert self._version is not None
        self._confirm(self._version)  # ended by the API server: nothing changed that was not sent

    def _confirm(self, version: str) -> None:
        self._version, self._confirmed_at = version, self._clock()

    def _call(self, function: Any, *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(function, *args)

    def _replace(self, jobs: dict[Key, dict[str, Any]]) -> None:
        gone = self._jobs.keys() - jobs.keys()
        for key in gone:
            self._apply(key, None)
        for key, job in jobs.items():
            if self._jobs.get(key) != job:
                self._apply(key, job)

    def _apply(self, key: Key, job: Change) -> None:
        if job is None:
            self._jobs.pop(key, None)
        else:
            self._jobs[key] = job
        for queue in self._followers.get(key, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(job)
