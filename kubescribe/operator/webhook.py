"""The completion webhook: once a job with `spec.webhookUrl` is finished, its final status is POSTed there, signed
with the namespace's webhook secret, retried with backoff in the background (the job is already finished; nothing
waits for it). The outcome is recorded in `status.webhook`, so a restarted operator does not send it again. The URL
is the tenant's: a webhook that leads where jobs may not connect (`kubescribe.egress`) is refused, not retried,
and a Warning Event says why. Redirects are not followed: they count as failed attempts.

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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from kubescribe import egress
from kubescribe.api.timestamps import now_timestamp
from kubescribe.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from kubescribe.contract import EgressRules

log = logging.getLogger("kubescribe.operator.webhook")

# The name of the namespace's Secret and of its key, not secrets themselves.
SECRET_NAME = "kubescribe-webhook"  # noqa: S105
SECRET_KEY = "secret"  # noqa: S105
BACKOFF_SECONDS = (1, 2, 4, 8, 16, 32)
TIMEOUT_SECONDS = 10
REFUSED = "WebhookRefused"
"""The reason of the Warning Event of a refused webhook."""

Event = Callable[[Mapping[str, Any], str, str, str], None]
"""Records an Event about a job: (the job, type, reason, message)."""


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


class Deliverer:
    """Sends due webhooks on background threads, one delivery per job at a time, only where `rules` permit."""

    def __init__(
        self, api: client.ApiClient, rules: EgressRules, event: Event, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.rules = rules
        self.event = event
        self.sleep = sleep
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook")
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()

    def submit(self, tj: Mapping[str, Any]) -> None:
        uid = tj["metadata"]["uid"]
        with self.lock:
            if uid in self.in_flight:
                return
            self.in_flight.add(uid)
        self.pool.submit(self._deliver, dict(tj))

    def _deliver(self, tj: dict[str, Any]) -> None:
        metadata = tj["metadata"]
        try:
            secret = self._namespace_secret(metadata["namespace"])
            body = payload(tj)
            attempts = (tj["status"].get("webhook") or {}).get("attempts", 0)
            error: str | None = None
            refused = False
            while attempts <= len(BACKOFF_SECONDS):
                if attempts:
                    self.sleep(BACKOFF_SECONDS[attempts - 1])
                try:
                    error = self._post(tj["spec"]["webhookUrl"], self.rules, secret, metadata["uid"], body)
                except egress.Refused as refusal:
                    error, refused = f"webhookUrl {refusal}", True
                    break
                attempts += 1
                if error is None:
                    break
                log.warning(
                    "webhook attempt %d for %s/%s failed: %s", attempts, metadata["namespace"], metadata["name"], error
                )
            record: dict[str, Any] = {"delivered": error is None, "attempts": attempts, "lastError": error}
            if error is None:
                record["deliveredAt"] = now_timestamp()
            if refused:
                record["refused"] = True
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], {"status": {"webhook": record}}
            )
            if refused:
                self.event(tj, "Warning", REFUSED, error or "")
        except ApiException as error:
            if error.status != 404:  # a job deleted meanwhile needs no record
                log.warning("webhook of %s/%s: %s", metadata["namespace"], metadata["name"], error.reason)
        finally:
            with self.lock:
                self.in_flight.discard(metadata["uid"])

    @staticmethod
    def _post(url: str, rules: EgressRules, secret: bytes, uid: str, body: bytes) -> str | None:
        """One POST: None when it answered 2xx, else why not. Raises egress.Refused where `rules` forbid it."""
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
                url, rules, method="POST", body=body, headers=headers, timeout=TIMEOUT_SECONDS
            ) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as error:
            return f"{type(error).__name__}: {error}"

    def _namespace_secret(self, namespace: str) -> bytes:
        """The namespace's webhook signing secret, created on first use."""
        try:
            found = self.core.read_namespaced_secret(SECRET_NAME, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = {
                "metadata": {"name": SECRET_NAME, "labels": {"app.kubernetes.io/name": "kubescribe"}},
                "stringData": {SECRET_KEY: secrets.token_urlsafe(32)},
            }
            try:
                self.core.create_namespaced_secret(namespace, body)
            except ApiException as race:
                if race.status != 409:
                    raise
            found = self.core.read_namespaced_secret(SECRET_NAME, namespace)
        return base64.b64decode(found.data[SECRET_KEY])
