"""What every request shares: the settings, the job store and its watch, and the object store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kubernetes import client
from minio import Minio

from kubescribe.gateway.settings import GatewaySettings
from kubescribe.gateway.stores.jobs import JobStore
from kubescribe.gateway.stores.objects import abort_abandoned_uploads, object_store
from kubescribe.gateway.stores.watch import JobWatcher


@dataclass
class Gateway:
    settings: GatewaySettings
    jobs: JobStore
    watcher: JobWatcher
    objects: Minio

    @classmethod
    def create(cls, settings: GatewaySettings, api_client: client.ApiClient) -> Gateway:
        watcher = JobWatcher(api_client, settings.watch_max_stale_seconds)
        return cls(settings, JobStore(api_client), watcher, object_store(settings))

    def abort_abandoned_uploads(self) -> list[str]:
        """Aborts the incomplete uploads older than `abandoned_upload_seconds`; returns their keys. Blocking."""
        older_than = timedelta(seconds=self.settings.abandoned_upload_seconds)
        return abort_abandoned_uploads(self.objects, self.settings.upload_bucket, older_than, datetime.now(UTC))
