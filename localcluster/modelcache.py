"""The node's model cache as a process on this machine, reading the local cluster's store: for the tests and
benchmarks that measure the cache itself, without a pod around it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from localcluster import processes
from localcluster.cluster import free_port

START_SECONDS = 30


@contextlib.contextmanager
def model_cache_process(store_url: str, directory: Path, log: Path, *, max_bytes: int | None = None) -> Iterator[str]:
    """A model cache of `store_url` keeping its files in `directory` (at most `max_bytes`, else its default),
    logging to `log`; yields its URL once it answers, and stops it however the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "KUBESCRIBE_MODEL_CACHE_STORE_ENDPOINT": store_url,
        "KUBESCRIBE_MODEL_CACHE_DIRECTORY": str(directory),
        "KUBESCRIBE_MODEL_CACHE_HOST": "127.0.0.1",
        "KUBESCRIBE_MODEL_CACHE_PORT": str(port),
        **({"KUBESCRIBE_MODEL_CACHE_MAX_BYTES": str(max_bytes)} if max_bytes is not None else {}),
    }
    url = f"http://127.0.0.1:{port}"
    process = processes.spawn([sys.executable, "-m", "kubescribe.modelcache"], log, env)
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the model cache did not answer within {START_SECONDS} s (exit code {process.poll()})")
