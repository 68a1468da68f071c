"""The model cache's settings, from KUBESCRIBE_MODEL_CACHE_* variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CacheSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBESCRIBE_MODEL_CACHE_")

    store_endpoint: str
    """The store's URL, such as http://minio.storage:9000: the cache fetches presigned URLs of this origin only."""
    directory: Path = Path("/cache")
    max_bytes: int = Field(20 << 30, gt=0)
    """The most the cached objects take together; an object larger than this is not cached."""
    host: str = "0.0.0.0"  # noqa: S104 - runner pods of the node connect to it
    port: int = Field(8480, gt=0, lt=65536)
    request_timeout_seconds: float = Field(60, gt=0)
    """The longest the store may take to answer, and between two reads of an object's bytes."""
    log_level: str = "INFO"
