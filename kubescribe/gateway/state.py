"""What every request shares: the settings, the job store and its watch, and the object store."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client
from minio import Minio

from kubescribe.gateway.settings import GatewaySettings
from kubescribe.gateway.stores.jobs import JobStore
from kubescribe.gateway.stores.objects import object_store
from kubescribe.gateway.stores.watch import JobWatcher


@dataclass
class Gateway:
    settings: GatewaySettings
    jobs: JobStore
    watcher: JobWatcher
    objects: Minio

    @classmethod
    def create(cls, settings: GatewaySettings, api_client: client.ApiClient) -> Gateway:
        return cls(settings, JobStore(api_client), JobWatcher(api_client), object_store(settings))
