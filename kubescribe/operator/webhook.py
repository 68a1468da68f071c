"""The completion webhook: once a job with `spec.webhookUrl` is finished, its final status is POSTed there, signed
with the namespace's webhook secret, retried with backoff in the background (the job is already finished; nothing
waits for it). The outcome is recorded in `status.webhook`, so a restarted operator does not send it again. The URL
is the tenant's: a webhook that leads where jobs may not connect (`kubescribe.egress`) is refused, not retried,
and a Warning Event says why. Redirects are not followed: they count as failed attempts.

The receivers are the tenants' too, so none may hold up another namespace's: attempts wait in a queue by the time
they are due, a few workers each make one attempt at a time and put a failed one back for later (no worker waits
through a backoff), an attempt has `DEADLINE_SECONDS` for all of it (connecting, sending and the whole answer, so a
receiver that trickles its answer is cut off), and a namespace has at most `PER_NAMESPACE` attempts in flight.

Receivers verify `X-Kubescribe-Signature: sha256=<hex>`, the HMAC-SHA256 of `<X-Kubescribe-Timestamp>.<body>` with
the `secret` key of the Secret `kubescribe-webhook` in the job's namespace (the operator creates it when missing),
and may use `X-Kubescribe-Delivery` (the job's uid) to drop a repeat: an operator stopped between a delivery and
its record sends it again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from kubescribe import egress
from kubescribe.api.timestamps import now_timestamp
from kubescribe.api.v1alpha1 import API_VERSION, KIND
from kubescribe.contract import EgressRules

log = logging.getLogger("kubescribe.operator.webhook")

# The name of the namespace's Secret and of its key, not secrets themselves.
SECRET_NAME = "kubescribe-webhook"  # noqa: S105
SECRET_KEY = "secret"  # noqa: S105
BACKOFF_SECONDS = (1, 2, 4, 8, 16, 32)
DEADLINE_SECONDS = 10
WORKERS = 8
PER_NAMESPACE = 2
REMEMBERED_SECONDS = 600
"""How long an ended delivery is remembered, so that a pass that read the job before its record does not send it
again."""
REFUSED = "WebhookRefused"
"""The reason of the Warning Event of a refused webhook."""

Event = Callable[[Mapping[str, Any], str, str, str], None]
"""Records an Event about a job: (the job, type, reason, message)."""
Record = Callable[[Mapping[str, Any], dict[str, Any]], None]
"""Writes a job's `status.webhook`."""
NamespaceSecret = Callable[[str], bytes]
"""The signing secret of a namespace."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def payload(tj: Mapping[str, Any]) -> bytes:
    """What the receiver gets: the job's identity and its final status."""
    metadata = tj["metadata"]
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "namespace": metadata["namespace"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "status": {key: value for key, value in (tj.get("status") or {}).items() if key != "webhook"},
    }
    return json.dumps(body, sort_keys=True).encode()


def is_due(tj: Mapping[str, Any]) -> bool:
    """A finished job with a webhook whose delivery has not ended (delivered, refused, or given up)."""
    status = tj.get("status") or {}
    webhook = status.get("webhook") or {}
    given_up = webhook.get("attempts", 0) >= len(BACKOFF_SECONDS) + 1
    ended = webhook.get("delivered") or webhook.get("refused") or given_up
    return bool(tj["spec"].get("webhookUrl")) and not ended


@dataclass
class _Delivery:
    tj: dict[str, Any]
    attempts: int
    due: float
    secret: bytes | None = None
    error: str | None = None

    @property
    def namespace(self) -> str:
        return str(self.tj["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.tj["metadata"]["uid"])


@dataclass
class _Queue:
    """The deliveries not ended, and what is in flight, by namespace; guarded by `ready`."""

    waiting: list[_Delivery] = field(default_factory=list)
    busy: Counter[str] = field(default_factory=Counter)
    known: set[str] = field(default_factory=set)
    """The uids of the deliveries waiting or in flight."""
    ended: dict[str, float] = field(default_factory=dict)
    """The uids of recently ended deliveries, with when they ended."""
    ready: threading.Condition = field(default_factory=threading.Condition)
    stopped: bool = False


class Deliverer:
    """Sends due webhooks from `workers` background threads, only where `rules` permit."""

    def __init__(
        self,
        rules: EgressRules,
        *,
        secret: NamespaceSecret,
        record: Record,
        event: Event,
        workers: int = WORKERS,
        per_namespace: int = PER_NAMESPACE,
        deadline: float = DEADLINE_SECONDS,
        backoff: Sequence[float] = BACKOFF_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.secret = secret
        self.record = record
        self.event = event
        self.per_namespace = per_namespace
        self.deadline = deadline
        self.backoff = backoff
        self.clock = clock
        self.queue = _Queue()
        self.threads = [
            threading.Thread(target=self._work, name=f"webhook-{number}", daemon=True) for number in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, tj: Mapping[str, Any]) -> None:
        """Queues the delivery of a finished job's webhook, unless it is queued already or has just ended."""
        uid = tj["metadata"]["uid"]
        attempts = ((tj.get("status") or {}).get("webhook") or {}).get("attempts", 0)
        with self.queue.ready:
            now = self.clock()
            self.queue.ended = {key: at for key, at in self.queue.ended.items() if now - at < REMEMBERED_SECONDS}
            if uid in self.queue.known or uid in self.queue.ended:
                return
            self.queue.known.add(uid)
            self.queue.waiting.append(_Delivery(dict(tj), attempts, due=now))
            self.queue.ready.notify()

    def stop(self) -> None:
        """Stops the workers once their attempts in flight are over."""
        with self.queue.ready:
            self.queue.stopped = True
            self.queue.ready.notify_all()
        for thread in self.threads:
            thread.join()

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                ended = self._attempt(delivery)
            except Exception:  # dropped for now: the next reconcile pass queues it again
                log.exception("webhook of %s/%s failed", delivery.namespace, delivery.tj["metadata"]["name"])
                self._settle(delivery, ended=False, again=False)
                continue
            self._settle(delivery, ended=ended, again=not ended)

    def _settle(self, delivery: _Delivery, *, ended: bool, again: bool) -> None:
        """Frees the delivery's place in flight; it is queued `again` after its backoff, or remembered as `ended`."""
        with self.queue.ready:
            self.queue.busy[delivery.namespace] -= 1
            if again:
                delivery.due = self.clock() + self.backoff[delivery.attempts - 1]
                self.queue.waiting.append(delivery)
            else:
                self.queue.known.discard(delivery.uid)
            if ended:
                self.queue.ended[delivery.uid] = self.clock()
            self.queue.ready.notify_all()

    def _next(self) -> _Delivery | None:
        """The earliest due delivery of a namespace with room for one more attempt, once there is one; None once
        stopped."""
        with self.queue.ready:
            while not self.queue.stopped:
                room = [d for d in self.queue.waiting if self.queue.busy[d.namespace] < self.per_namespace]
                first = min(room, key=lambda delivery: delivery.due, default=None)
                if first is None:
                    self.queue.ready.wait()
                elif first.due > self.clock():
                    self.queue.ready.wait(max(0.0, first.due - self.clock()))
                else:
                    self.queue.waiting.remove(first)
                    self.queue.busy[first.namespace] += 1
                    return first
            return None

    def _attempt(self, delivery: _Delivery) -> bool:
        """One attempt; records the outcome and returns True once the delivery has ended (delivered, refused or
        given up)."""
        tj, metadata = delivery.tj, delivery.tj["metadata"]
        if delivery.secret is None:
            delivery.secret = self.secret(delivery.namespace)
        try:
            delivery.error = self._post(
                tj["spec"]["webhookUrl"], self.rules, delivery.secret, delivery.uid, payload(tj), deadline=self.deadline
            )
        except egress.Refused as refusal:
            message = f"webhookUrl {refusal}"
            self.record(tj, {"delivered": False, "attempts": delivery.attempts, "lastError": message, "refused": True})
            self.event(tj, "Warning", REFUSED, message)
            return True
        delivery.attempts += 1
        if delivery.error is None:
            at = now_timestamp()
            self.record(tj, {"delivered": True, "attempts": delivery.attempts, "lastError": None, "deliveredAt": at})
            return True
        log.warning(
            "webhook attempt %d for %s/%s failed: %s",
            delivery.attempts,
            delivery.namespace,
            metadata["name"],
            delivery.error,
        )
        if delivery.attempts <= len(self.backoff):
            return False
        self.record(tj, {"delivered": False, "attempts": delivery.attempts, "lastError": delivery.error})
        return True

    @staticmethod
    def _post(
        url: str, rules: EgressRules, secret: bytes, uid: str, body: bytes, *, deadline: float = DEADLINE_SECONDS
    ) -> str | None:
        """One POST, all of it within `deadline` seconds: None when it answered 2xx, else why not. Raises
        egress.Refused where `rules` forbid it."""
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kubescribe-operator",
            "X-Kubescribe-Delivery": uid,
            "X-Kubescribe-Timestamp": timestamp,
            "X-Kubescribe-Signature": sign(secret, timestamp, body),
        }
        try:
            with egress.request(
                url, rules, method="POST", body=body, headers=headers, timeout=deadline, deadline=deadline
            ) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as error:
            return f"{type(error).__name__}: {error}"


def namespace_secret(core: client.CoreV1Api, namespace: str) -> bytes:
    """The namespace's webhook signing secret, created on first use."""
    try:
        found = core.read_namespaced_secret(SECRET_NAME, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        body = {
            "metadata": {"name": SECRET_NAME, "labels": {"app.kubernetes.io/name": "kubescribe"}},
            "stringData": {SECRET_KEY: secrets.token_urlsafe(32)},
        }
        try:
            core.create_namespaced_secret(namespace, body)
        except ApiException as race:
            if race.status != 409:
                raise
        found = core.read_namespaced_secret(SECRET_NAME, namespace)
    return base64.b64decode(found.data[SECRET_KEY])
