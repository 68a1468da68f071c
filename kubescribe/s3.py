"""S3 access shared by the components."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio

POOL_TIMEOUT_SECONDS = 300


def pool_settings() -> dict[str, Any]:
    """The urllib3.PoolManager settings of MinIO's own client: for a client that brings its own pool."""
    return {
        "timeout": urllib3.Timeout(connect=POOL_TIMEOUT_SECONDS, read=POOL_TIMEOUT_SECONDS),
        "maxsize": 10,
        "cert_reqs": "CERT_REQUIRED",
        "ca_certs": os.environ.get("SSL_CERT_FILE") or certifi.where(),
        "retries": urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    }


def client(
    endpoint_url: str,
    access_key: str | None,
    secret_key: str | None,
    region: str | None = None,
    http_client: urllib3.PoolManager | None = None,
) -> Minio:
    """A client of the S3 store at `endpoint_url`, such as http://minio.storage:9000; anonymous without keys.
    With `region`, URLs are presigned without asking the store for the bucket's region; with `http_client`, its
    connections are that pool's (see `pool_settings`)."""
    endpoint = urlsplit(endpoint_url)
    return Minio(
        endpoint.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=endpoint.scheme == "https",
        region=region,
        http_client=http_client,
    )
