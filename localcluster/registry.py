"""The local cluster's image registry (CNCF distribution): its configuration, and the project's images pushed to it."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

ENVIRONMENT = {"OTEL_TRACES_EXPORTER": "none"}
"""The registry's variables: without this its tracing sends spans to an OTLP collector on localhost."""


def registry_config(root: Path, port: int) -> dict[str, Any]:
    """A registry storing its blobs and manifests under `root`, serving plain HTTP on 127.0.0.1:`port`, with no
    authentication."""
    return {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }


def push_images(env: Mapping[str, str]) -> dict[str, str]:
    """Pushes the images `make images` built to the registry `env` names (KUBESCRIBE_REGISTRY); returns the chart
    values that install them by digest."""
    pushed = subprocess.run(
        [str(REPO / "hack" / "push-images.sh")], env=dict(env), capture_output=True, text=True, check=False
    )
    if pushed.returncode != 0:
        raise RuntimeError(f"pushing the images failed: {pushed.stderr.strip()}")
    return dict(line.split("=", 1) for line in pushed.stdout.splitlines())
