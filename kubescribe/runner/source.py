"""Getting the audio: S3 access, streamed downloads, and the check that the download is audio at all."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from faster_whisper import decode_audio
from minio import Minio
from minio.error import S3Error

from kubescribe import egress, s3
from kubescribe.api.v1alpha1 import Source
from kubescribe.contract import EXIT_SOURCE_NOT_FOUND, EgressRules, StoreGrants
from kubescribe.runner.config import S3Settings
from kubescribe.runner.errors import RunnerFailure, bad_audio
from kubescribe.runner.transfer import download, download_source

SAMPLE_RATE = 16000
"""What Whisper listens at; the audio is decoded and resampled to it."""
DEFAULT_S3_ENDPOINT = "https://s3.amazonaws.com"
NOT_FOUND_CODES = ("NoSuchKey", "NoSuchBucket")

Audio = npt.NDArray[np.float32]


def s3_client(settings: S3Settings, rules: EgressRules) -> Minio:
    """A client of the job's own store (source.s3.secretName), whose every connection goes only where `rules`
    permit: a refused one raises egress.Refused."""
    pool = egress.pool_manager(rules, **s3.pool_settings())
    return s3.client(
        settings.endpoint or DEFAULT_S3_ENDPOINT, settings.access_key, settings.secret_key, http_client=pool
    )


def fetch(source: Source, s3: S3Settings, grants: StoreGrants | None, rules: EgressRules, destination: Path) -> None:
    """Download the source to `destination`, streaming it to disk: through the job's presigned URL when it is in
    the operator's store, else with the job's own credentials, or from its URL; the last two where `rules` permit."""
    if grants is not None and grants.source is not None:
        download(grants.source.url, destination, grants.source.uri)
        return
    if source.s3:
        try:
            s3_client(s3.with_endpoint(source.s3.endpoint), rules).fget_object(
                source.s3.bucket, source.s3.key, str(destination)
            )
        except S3Error as error:
            if error.code in NOT_FOUND_CODES:
                raise RunnerFailure(
                    EXIT_SOURCE_NOT_FOUND,
                    "SourceNotFound",
                    f"s3://{source.s3.bucket}/{source.s3.key} does not exist ({error.code})",
                ) from None
            raise
        return
    download_source(source.url or "", destination, rules)


def load_audio(path: Path) -> Audio:
    """Decode the file to 16 kHz mono samples, or fail with BadAudio when it holds none."""
    if path.stat().st_size == 0:
        raise bad_audio("the source is empty (0 bytes)")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise bad_audio("the source has no audio stream")
        audio: Audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except av.FFmpegError as error:
        raise bad_audio(f"the source is not audio: {error.strerror}") from None
    if audio.size == 0:
        raise bad_audio("the source has no audio samples")
    return audio
