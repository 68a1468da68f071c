"""S3 access shared by the components."""

from __future__ import annotations

from urllib.parse import urlsplit

from minio import Minio


def client(endpoint_url: str, access_key: str | None, secret_key: str | None, region: str | None = None) -> Minio:
    """A client of the S3 store at `endpoint_url`, such as http://minio.storage:9000; anonymous without keys.
    With `region`, URLs are presigned without asking the store for the bucket's region."""
    endpoint = urlsplit(endpoint_url)
    return Minio(
        endpoint.netloc, access_key=access_key, secret_key=secret_key, secure=endpoint.scheme == "https", region=region
    )
