"""The TranscriptionJob the gateway creates for an upload: its name, its labels and annotations, and the resource
itself (its audio lives at `kubescribe.contract.uploaded_source_key`). Pure functions."""

from __future__ import annotations

import secrets
import string
import unicodedata
from pathlib import PurePosixPath
from typing import Any

from kubescribe.api.v1alpha1 import API_VERSION, KIND, TranscriptionJobSpec
from kubescribe.contract import UPLOADED_SOURCE_ANNOTATION
from kubescribe.gateway.stores.jobs import SUBMITTED_BY_GATEWAY

FILENAME_ANNOTATION = "kubescribe.io/filename"
REQUEST_ID_ANNOTATION = "kubescribe.io/request-id"
REQUESTED_BY_ANNOTATION = "kubescribe.io/requested-by"
"""Who submitted the job: the API key's name or the Kubernetes token's user name."""
MAX_FILENAME_CHARS = 200
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_CHARS = 12


def new_job_id() -> str:
    return "tj-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_CHARS))


def is_job_id(value: str) -> bool:
    return len(value) == 3 + _ID_CHARS and value.startswith("tj-") and all(c in _ID_ALPHABET for c in value[3:])


def sanitize_filename(raw: str | None) -> str:
    """The last path component, without control characters or leading dots, at most 200 characters; never a path."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME_CHARS:
        suffix = PurePosixPath(name).suffix[:16]
        name = name[: MAX_FILENAME_CHARS - len(suffix)] + suffix
    return name or "audio"


def build_transcription_job(
    namespace: str,
    job_id: str,
    spec: TranscriptionJobSpec,
    filename: str,
    *,
    request_id: str,
    requested_by: str,
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": job_id,
            "namespace": namespace,
            "labels": dict(SUBMITTED_BY_GATEWAY),
            "annotations": {
                UPLOADED_SOURCE_ANNOTATION: "true",
                FILENAME_ANNOTATION: filename,
                REQUEST_ID_ANNOTATION: request_id,
                REQUESTED_BY_ANNOTATION: requested_by,
            },
        },
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
