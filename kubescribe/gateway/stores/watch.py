"""One watch of every TranscriptionJob, shared by the whole gateway: a cache of the jobs (for the queued cap and
readiness) and an asyncio fan-out of each job's changes to the clients that follow it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION

log = logging.getLogger("kubescribe.gateway.watch")

Key = tuple[str, str]
Change = dict[str, Any] | None
"""The job as it is now, or None once it is gone."""
WATCH_SECONDS = 60
RETRY_SECONDS = 1.0


def _key(job: dict[str, Any]) -> Key:
    return job["metadata"]["namespace"], job["metadata"]["name"]


class JobWatcher:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._jobs: dict[Key, dict[str, Any]] = {}
        self._followers: dict[Key, set[asyncio.Queue[Change]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._watch = watch.Watch()
        self.synced = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, name="job-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._watch.stop()

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
                version = self._relist()
                self._stream(version)
            except Exception:
                log.warning("watch of transcriptionjobs failed; listing again", exc_info=True)
                self._stopping.wait(RETRY_SECONDS)

    def _relist(self) -> str:
        listed = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        self._call(self._replace, {_key(job): job for job in listed["items"]})
        return str(listed["metadata"]["resourceVersion"])

    def _stream(self, version: str) -> None:
        """Follows changes from `version` until the watch expires (then lists again: simple and always correct)."""
        for event in self._watch.stream(
            self._api.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
        ):
            kind, job = event["type"], event["object"]
            if kind == "ERROR":
                raise ApiException(status=job.get("code"), reason=job.get("message"))
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._call(self._apply, _key(job), None if kind == "DELETED" else job)

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
        self.synced = True

    def _apply(self, key: Key, job: Change) -> None:
        if job is None:
            self._jobs.pop(key, None)
        else:
            self._jobs[key] = job
        for queue in self._followers.get(key, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(job)
