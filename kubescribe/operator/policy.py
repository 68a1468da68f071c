"""What a namespace's jobs may use: where in the operator's store they may read and write, and which models they
may name. By default a namespace owns the prefix `<bucket>/<namespace>/` of each of the store's buckets; grants
add locations to read (or to read and write) for listed namespaces; models come from an allow-list, or from an
s3:// directory the namespace may read.

The chart's ValidatingAdmissionPolicy (charts/kubescribe/templates/storage-validatingadmissionpolicy.yaml) says
the same in CEL and refuses a job at `kubectl apply`; this is the operator's own check, made before anything is
read or written for a job, for clusters where the policy is not installed. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from pydantic import BaseModel, Field, field_validator

from kubescribe.api.v1alpha1 import TranscriptionJobSpec, model_location

STORAGE_FORBIDDEN: Final = "StorageForbidden"
MODEL_FORBIDDEN: Final = "ModelForbidden"
ALL_NAMESPACES: Final = "*"

Refusal = tuple[str, str]
"""(reason, message)"""


class StorageGrant(BaseModel):
    """A location of the store beyond the namespaces' own prefixes, readable (or writable too) by some namespaces."""

    name: str
    location: str = Field(description="s3://bucket/prefix/ (the prefix may be empty: the whole bucket).")
    access: Literal["read", "readwrite"] = "read"
    namespaces: list[str] = Field([ALL_NAMESPACES], description='The namespaces it is granted to; "*" for all.')

    @field_validator("location")
    @classmethod
    def _a_directory(cls, location: str) -> str:
        if not location.startswith("s3://") or not location.endswith("/") or location.count("/") < 3:
            raise ValueError(f"a grant's location is s3://bucket/ or s3://bucket/prefix/, not {location!r}")
        return location

    def covers(self, namespace: str) -> bool:
        return ALL_NAMESPACES in self.namespaces or namespace in self.namespaces


class StoragePolicy(BaseModel):
    buckets: list[str] = ["audio", "transcripts"]
    """The store's buckets in which every namespace owns `<bucket>/<namespace>/`."""
    grants: list[StorageGrant] = []

    def readable(self, namespace: str) -> list[str]:
        """The s3:// locations (ending with /) the namespace's jobs may read."""
        granted = [grant.location for grant in self.grants if grant.covers(namespace)]
        return self._own(namespace) + granted

    def writable(self, namespace: str) -> list[str]:
        granted = [g.location for g in self.grants if g.covers(namespace) and g.access == "readwrite"]
        return self._own(namespace) + granted

    def _own(self, namespace: str) -> list[str]:
        return [f"s3://{bucket}/{namespace}/" for bucket in self.buckets]


def within(uri: str, locations: Sequence[str]) -> bool:
    """Whether the object or prefix `uri` is under one of `locations`; `.` and `..` segments are never."""
    path = uri.removeprefix("s3://")
    if any(part in (".", "..") for part in path.split("/")):
        return False
    return any(uri.startswith(location) for location in locations)


def _outside(namespace: str, uri: str, verb: str, locations: Sequence[str]) -> Refusal:
    return (
        STORAGE_FORBIDDEN,
        f"storage policy: namespace {namespace} may not {verb} {uri}; "
        f"it may {verb} under {', '.join(locations) or 'nothing'} (storage.buckets and storage.grants)",
    )


def model_allowed(model: str, allowed: Sequence[str], readable: Sequence[str]) -> bool:
    """A name or hub id in `allowed`, or an s3:// directory under an allowed s3:// prefix or a readable location."""
    if model in allowed:
        return True
    if model_location(model) is None:
        return False
    prefixes = [entry for entry in allowed if entry.startswith("s3://") and entry.endswith("/")]
    return within(model, [*prefixes, *readable])


def refusal(
    spec: TranscriptionJobSpec, namespace: str, storage: StoragePolicy, models: Sequence[str]
) -> Refusal | None:
    """Why the job may not run, or None. `spec` is the runner's: the model and output location filled in. Objects
    in a store the job names itself (source.s3.secretName: its outputs and an s3:// model are there too) are its
    own business."""
    source, output = spec.source.s3, spec.outputs.s3
    own_store = source is not None and source.secret_name is not None
    readable = storage.readable(namespace)
    if source is not None and not own_store:
        uri = f"s3://{source.bucket}/{source.key}"
        if not within(uri, readable):
            return _outside(namespace, uri, "read", readable)
    if output is not None and not own_store:
        uri = f"s3://{output.bucket}/{output.prefix}"
        writable = storage.writable(namespace)
        if not within(uri, writable):
            return _outside(namespace, uri, "write", writable)
    model = spec.model or ""
    if not (model_allowed(model, models, readable) or (own_store and model_location(model) is not None)):
        return (
            MODEL_FORBIDDEN,
            f"model policy: {spec.model} is not an allowed model (models.allowed: {', '.join(models)}), "
            f"nor an s3:// directory namespace {namespace} may read",
        )
    return None
