"""A shared s3:// model through the node's model cache: JOBS runner-style fetches of the `base` model's files (each
into a fresh directory, as each runner pod has its own) from the local cluster's store with their presigned URLs,
first straight from the store (the baseline), then through a model cache process of this machine. For each side:
the time of each fetch and the bytes the store sent (all the fetches received, straight from the store; what the
cache read from it, by its metrics, through the cache)."""

from __future__ import annotations

import datetime
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from minio import Minio

from kubescribe.contract import Grant, StoreGrants
from kubescribe.runner.models import resolve_model
from localcluster.cluster import ClusterState, LocalCluster
from localcluster.modelcache import model_cache_process

JOBS = 8
BUCKET = "bench-models"
PREFIX = "base/"
STORE_BYTES = "kubescribe_model_cache_store_bytes_total"


def _no_store() -> Minio:
    raise AssertionError("a job with grants reads the store through its presigned URLs only")


def _upload_base(s3: Minio, work: Path) -> int:
    """The `base` model's files in the store; their bytes together."""
    directory = Path(resolve_model("base", work / "assembled", _no_store))
    if not s3.bucket_exists(BUCKET):
        s3.make_bucket(BUCKET)
    for file in directory.iterdir():
        s3.fput_object(BUCKET, PREFIX + file.name, str(file))
    return sum(file.stat().st_size for file in directory.iterdir())


def _grants(s3: Minio) -> StoreGrants:
    expires = datetime.timedelta(hours=1)
    return StoreGrants(
        expires=(datetime.datetime.now(datetime.UTC) + expires).isoformat(),
        model={
            item.object_name.removeprefix(PREFIX): Grant(
                url=s3.presigned_get_object(BUCKET, item.object_name, expires=expires),
                uri=f"s3://{BUCKET}/{item.object_name}",
            )
            for item in s3.list_objects(BUCKET, prefix=PREFIX)
        },
    )


def _fetches(s3: Minio, work: Path, node_cache: str | None) -> tuple[list[float], int]:
    """Seconds of each of JOBS fetches of the model, each into a directory of its own; the bytes they received."""
    seconds, received = [], 0
    for _ in range(JOBS):
        with tempfile.TemporaryDirectory(dir=work) as pod_cache:
            started = time.perf_counter()
            model = resolve_model(
                f"s3://{BUCKET}/{PREFIX}", Path(pod_cache), _no_store, _grants(s3), node_cache=node_cache
            )
            seconds.append(time.perf_counter() - started)
            received += sum(file.stat().st_size for file in Path(model).iterdir())
    return seconds, received


def _side(seconds: list[float], store_bytes: float) -> dict[str, Any]:
    return {
        "first_seconds": round(seconds[0], 3),
        "later_median_seconds": round(statistics.median(seconds[1:]), 3),
        "total_seconds": round(sum(seconds), 2),
        "store_bytes": int(store_bytes),
    }


def measure(cluster: LocalCluster, state: ClusterState, work: Path) -> dict[str, Any]:
    s3 = Minio(cluster.s3_url(state).removeprefix("http://"), state.minio_user, state.minio_password, secure=False)
    model_bytes = _upload_base(s3, work)
    direct, direct_bytes = _fetches(s3, work, None)
    with model_cache_process(cluster.s3_url(state), work / "node-cache", work / "node-cache.log") as url:
        cached, _ = _fetches(s3, work, url)
        metrics = httpx.get(f"{url}/metrics/").text
    [store_bytes] = [float(line.split()[1]) for line in metrics.splitlines() if line.startswith(STORE_BYTES + " ")]
    through, straight = _side(cached, store_bytes), _side(direct, direct_bytes)
    return {
        "jobs": JOBS,
        "model_bytes": model_bytes,
        "direct": straight,
        "cached": through,
        "ratio_later_cached_to_direct": round(through["later_median_seconds"] / straight["later_median_seconds"], 2),
        "ratio_store_bytes_cached_to_direct": round(store_bytes / straight["store_bytes"], 3),
    }
