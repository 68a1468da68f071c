"""The TranscriptionJob the gateway creates for an upload or a source: its name, its labels and annotations, the
batch it belongs to, and the resource itself (uploaded audio lives at `kubescribe.contract.uploaded_source_key`).
Pure functions."""

from __future__ import annotations

import secrets
import string
import unicodedata
from pathlib import PurePosixPath
from typing import Any

from kubescribe.api.v1alpha1 import API_VERSION, KIND, KUEUE_QUEUE_LABEL, TranscriptionJobSpec
from kubescribe.contract import CLEANUP_FINALIZER, UPLOADED_SOURCE_ANNOTATION
from kubescribe.gateway.stores.jobs import SUBMITTED_BY_GATEWAY

FILENAME_ANNOTATION = "kubescribe.io/filename"
REQUEST_ID_ANNOTATION = "kubescribe.io/request-id"
REQUESTED_BY_ANNOTATION = "kubescribe.io/requested-by"
"""Who submitted the job: the API key's name or the Kubernetes token's user name."""
BATCH_LABEL = "kubescribe.io/batch"
"""The batch a job was submitted in: `kubectl get tj -l kubescribe.io/batch=<batch id>` lists it."""
BATCH_INDEX_ANNOTATION = "kubescribe.io/batch-index"
"""The job's file's place in its batch's request, from 0."""
MAX_FILENAME_CHARS = 200
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_CHARS = 12


def new_job_id() -> str:
    return "tj-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_CHARS))


def is_job_id(value: str) -> bool:
    return len(value) == 3 + _ID_CHARS and value.startswith("tj-") and all(c in _ID_ALPHABET for c in value[3:])


def new_batch_id() -> str:
    """A batch's id, which is also a label value (at most 63 letters, digits and hyphens)."""
    return "tb-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_CHARS))


def is_batch_id(value: str) -> bool:
    return len(value) == 3 + _ID_CHARS and value.startswith("tb-") and all(c in _ID_ALPHABET for c in value[3:])


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
    uploaded: bool = True,
    batch: tuple[str, int] | None = None,
    queue: str = "",
) -> dict[str, Any]:
    """`uploaded`: the source is the gateway's upload for this job, which the operator's finalizer deletes with it,
    there from the start. `batch`: the batch's id and the file's place in it. `queue`: the Kueue LocalQueue that
    admits it, if any."""
    labels = dict(SUBMITTED_BY_GATEWAY)
    annotations = {
        FILENAME_ANNOTATION: filename,
        REQUEST_ID_ANNOTATION: request_id,
        REQUESTED_BY_ANNOTATION: requested_by,
    }
    if uploaded:
        annotations[UPLOADED_SOURCE_ANNOTATION] = "true"
    if batch is not None:
        labels[BATCH_LABEL], annotations[BATCH_INDEX_ANNOTATION] = batch[0], str(batch[1])
    if queue:
        labels[KUEUE_QUEUE_LABEL] = queue
    metadata = {"name": job_id, "namespace": namespace, "labels": labels, "annotations": annotations}
    if uploaded:
        metadata["finalizers"] = [CLEANUP_FINALIZER]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
