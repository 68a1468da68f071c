"""API keys: each bound to one namespace, kept only as SHA-256 hashes in one Secret.

The Secret's data maps `<hex sha256 of the key>` to JSON `{"namespace", "name", "created"}`. The CLI manages keys
with the user's own credentials (these functions); the gateway only reads the Secret (`KeyStore`)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes.client import CoreV1Api
from kubernetes.client.rest import ApiException

from kubescribe.gateway.errors import Unavailable

log = logging.getLogger("kubescribe.gateway.keys")

KEY_PREFIX = "ks_"
KEYS = "the API key store (a Secret in Kubernetes)"


@dataclass(frozen=True)
class KeyRecord:
    hash: str
    namespace: str
    name: str
    created: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_records(data: Mapping[str, str] | None) -> dict[str, KeyRecord]:
    """The records of a Secret's (base64) data, by hash; malformed entries are skipped."""
    records = {}
    for digest, encoded in (data or {}).items():
        try:
            value = json.loads(base64.b64decode(encoded))
            records[digest] = KeyRecord(digest, str(value["namespace"]), str(value["name"]), str(value["created"]))
        except (ValueError, KeyError, TypeError):
            continue
    return records


def _encode(record: Mapping[str, str]) -> str:
    return base64.b64encode(json.dumps(record).encode()).decode()


def _read(core_api: CoreV1Api, secret_namespace: str, secret_name: str) -> dict[str, KeyRecord]:
    try:
        secret = core_api.read_namespaced_secret(secret_name, secret_namespace)
    except ApiException as error:
        if error.status == 404:
            return {}
        raise
    return parse_records(secret.data)


def create_key(core_api: CoreV1Api, secret_namespace: str, secret_name: str, namespace: str, name: str) -> str:
    """Adds a key for `namespace` and returns it: the only time the plaintext exists."""
    key = new_key()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    data = {hash_key(key): _encode({"namespace": namespace, "name": name, "created": created})}
    try:
        core_api.patch_namespaced_secret(secret_name, secret_namespace, {"data": data})
    except ApiException as error:
        if error.status != 404:
            raise
        body = {
            "metadata": {"name": secret_name, "labels": {"app.kubernetes.io/name": "kubescribe"}},
            "type": "Opaque",
            "data": data,
        }
        core_api.create_namespaced_secret(secret_namespace, body)
    return key


def list_keys(core_api: CoreV1Api, secret_namespace: str, secret_name: str) -> list[KeyRecord]:
    records = _read(core_api, secret_namespace, secret_name).values()
    return sorted(records, key=lambda record: (record.namespace, record.name, record.created))


def revoke_key(core_api: CoreV1Api, secret_namespace: str, secret_name: str, namespace: str, name: str) -> int:
    """Removes every key named `name` of `namespace`; returns how many there were."""
    doomed = [
        digest
        for digest, record in _read(core_api, secret_namespace, secret_name).items()
        if (record.namespace, record.name) == (namespace, name)
    ]
    if doomed:
        core_api.patch_namespaced_secret(secret_name, secret_namespace, {"data": dict.fromkeys(doomed)})
    return len(doomed)


class KeyStore:
    """The gateway's copy of the keys Secret, read again by `refresh` (called in the background every
    `keys_cache_seconds`), never on a request's path. When a read fails, the last copy is kept and serves for
    `max_stale` seconds after it was read; past that, or before the first read, lookups raise Unavailable."""

    def __init__(
        self, load: Callable[[], dict[str, KeyRecord]], max_stale: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load, self._max_stale, self._clock = load, max_stale, clock
        self._records: dict[str, KeyRecord] = {}
        self._loaded_at: float | None = None

    @classmethod
    def from_secret(cls, core_api: CoreV1Api, secret_namespace: str, secret_name: str, max_stale: float) -> KeyStore:
        return cls(lambda: _read(core_api, secret_namespace, secret_name), max_stale)

    def refresh(self) -> None:
        """Reads the Secret again; on failure keeps the last copy. Blocking."""
        try:
            self._records, self._loaded_at = self._load(), self._clock()
        except Exception as error:
            log.warning("the API keys could not be read again (%s); the last ones read serve", type(error).__name__)

    def staleness(self) -> str | None:
        """Why the keys cannot be trusted now, or None when they can."""
        if self._loaded_at is None:
            return "the API keys have not been read yet"
        age = self._clock() - self._loaded_at
        if age > self._max_stale:
            return f"the API keys were last read {age:.0f} s ago (more than {self._max_stale:g} s)"
        return None

    def lookup(self, key: str) -> KeyRecord | None:
        if self.staleness() is not None:
            raise Unavailable(KEYS)
        return self._records.get(hash_key(key))
