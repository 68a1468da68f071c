"""What the routes share: settings, the Kubernetes and S3 clients, the keys, the rate limit and the job watch; and
the blocking Kubernetes calls on TranscriptionJobs of the gateway."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from minio import Minio

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION
from kubescribe.gateway.auth import TokenReviewer
from kubescribe.gateway.jobs import GATEWAY_SELECTOR, SUBMITTED_BY_LABEL
from kubescribe.gateway.keys import KeyStore
from kubescribe.gateway.ratelimit import RateLimiter
from kubescribe.gateway.settings import GatewaySettings
from kubescribe.gateway.storage import s3_client
from kubescribe.gateway.watch import JobWatcher


@dataclass
class Gateway:
    settings: GatewaySettings
    api_client: client.ApiClient
    store: Minio
    keys: KeyStore
    tokens: TokenReviewer | None
    watcher: JobWatcher
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings.rate_limit_per_second, self.settings.rate_limit_burst)
        self._jobs = client.CustomObjectsApi(self.api_client)

    @classmethod
    def create(cls, settings: GatewaySettings, api_client: client.ApiClient) -> Gateway:
        keys = KeyStore.from_secret(
            client.CoreV1Api(api_client),
            settings.keys_secret_namespace,
            settings.keys_secret_name,
            settings.keys_cache_seconds,
        )
        tokens = TokenReviewer(api_client) if settings.kubernetes_tokens else None
        return cls(settings, api_client, s3_client(settings), keys, tokens, JobWatcher(api_client))

    def rate_limit(self, identity: str) -> float:
        return self.limiter.take(identity, time.monotonic())

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The job, if the gateway submitted it."""
        try:
            job: dict[str, Any] = self._jobs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return job if job["metadata"].get("labels", {}).get(SUBMITTED_BY_LABEL) == "gateway" else None

    def list_jobs(self, namespace: str) -> list[dict[str, Any]]:
        listed = self._jobs.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=GATEWAY_SELECTOR
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def create_job(self, job: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._jobs.create_namespaced_custom_object(
            GROUP, VERSION, job["metadata"]["namespace"], PLURAL, job
        )
        return created

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self._jobs.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def kubernetes_reachable(self) -> bool:
        try:
            client.VersionApi(self.api_client).get_code(_request_timeout=3)
        except Exception:
            return False
        return True

    def s3_reachable(self) -> bool:
        try:
            return bool(self.store.bucket_exists(self.settings.upload_bucket))
        except Exception:
            return False
