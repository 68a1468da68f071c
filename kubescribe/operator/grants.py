"""What a runner may do in the operator's store, as presigned URLs: GET its source, PUT each transcript, GET each
file of its s3:// model, all valid until the job's deadline has passed; and what a pool's workers may: GET each file
of the pool's s3:// model. Runners and workers hold no store credentials. Pure: presigning and the listing of a
model's files are given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Final

from kubescribe.api.timestamps import format_timestamp
from kubescribe.api.v1alpha1 import TranscriptionJobSpec, model_location, transcript_key
from kubescribe.contract import Grant, StoreGrants

Presign = Callable[[str, str, str, timedelta], str]
"""(HTTP method, bucket, key, valid for) -> URL."""
MAX_VALIDITY: Final = timedelta(days=7)
"""The longest S3 lets a presigned URL live."""
MAX_MODEL_FILES: Final = 64


def model_files(model: str, keys: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """The files of the model's directory by path, from the keys listed under its prefix; or why there are none."""
    location = model_location(model)
    assert location is not None
    _, prefix = location
    files = {}
    for key in keys:
        path = PurePosixPath(key[len(prefix) :])
        if key.endswith("/") or path.is_absolute() or ".." in path.parts or not path.parts:
            continue
        files[str(path)] = key
    if len(files) > MAX_MODEL_FILES:
        return {}, f"{model} holds more than {MAX_MODEL_FILES} objects: name the directory of one model"
    return files, None


def store_grants(
    spec: TranscriptionJobSpec,
    presign: Presign,
    now: datetime,
    *,
    grace: timedelta,
    model_keys: Sequence[str] = (),
    model_error: str | None = None,
) -> StoreGrants:
    """The grants of a job whose objects are all in the operator's store. `spec` is the runner's (its output
    location filled in); they are valid for the job's deadline and `grace` beyond it (the Job's clock starts when
    it is created, a little after the URLs are); `model_keys` are the keys listed under an s3:// model's prefix."""
    valid = min(timedelta(seconds=spec.active_deadline_seconds) + grace, MAX_VALIDITY)
    grants = StoreGrants(expires=format_timestamp(now + valid), model_error=model_error)
    if spec.source.s3 is not None:
        source = spec.source.s3
        grants.source = Grant(
            url=presign("GET", source.bucket, source.key, valid), uri=f"s3://{source.bucket}/{source.key}"
        )
    output = spec.outputs.s3
    assert output is not None
    for format_ in spec.outputs.formats:
        key = transcript_key(output.prefix, spec.source, format_)
        grants.outputs[format_] = Grant(
            url=presign("PUT", output.bucket, key, valid), uri=f"s3://{output.bucket}/{key}"
        )
    if model_location(spec.model) is not None:
        model = model_grants(spec.model, presign, now, valid, keys=model_keys, error=model_error)
        grants.model, grants.model_error = model.model, model.model_error
    return grants


def model_grants(
    model: str, presign: Presign, now: datetime, valid: timedelta, *, keys: Sequence[str], error: str | None = None
) -> StoreGrants:
    """GET of each file of an s3:// model, valid for `valid` from `now`, from the keys listed under its prefix; or
    why there are none (`error`, when the listing failed)."""
    location = model_location(model)
    assert location is not None
    grants = StoreGrants(expires=format_timestamp(now + valid), model_error=error)
    if error is None:
        files, grants.model_error = model_files(model, keys)
        if not files and grants.model_error is None:
            grants.model_error = f"{model} holds no objects"
        grants.model = {
            path: Grant(url=presign("GET", location[0], key, valid), uri=f"s3://{location[0]}/{key}")
            for path, key in files.items()
        }
    return grants
