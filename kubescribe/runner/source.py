"""Getting the audio: S3 access, streamed downloads, and the check that the download is audio at all."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from faster_whisper import decode_audio
from minio import Minio
from minio.error import S3Error

from kubescribe import s3
from kubescribe.api.v1alpha1 import Source
from kubescribe.contract import EXIT_SOURCE_NOT_FOUND
from kubescribe.runner.config import S3Settings
from kubescribe.runner.errors import RunnerFailure, bad_audio

SAMPLE_RATE = 16000
"""What Whisper listens at; the audio is decoded and resampled to it."""
CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60
DEFAULT_S3_ENDPOINT = "https://s3.amazonaws.com"
NOT_FOUND_CODES = ("NoSuchKey", "NoSuchBucket")

Audio = npt.NDArray[np.float32]


def s3_client(settings: S3Settings) -> Minio:
    return s3.client(settings.endpoint or DEFAULT_S3_ENDPOINT, settings.access_key, settings.secret_key)


def fetch(source: Source, s3: S3Settings, destination: Path) -> None:
    """Download the source to `destination`, streaming it to disk."""
    if source.s3:
        try:
            s3_client(s3.with_endpoint(source.s3.endpoint)).fget_object(
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
    url = source.url or ""
    try:
        # S310: the spec admits only http and https URLs.
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response, destination.open("wb") as file:  # noqa: S310
            shutil.copyfileobj(response, file, CHUNK_BYTES)
    except urllib.error.HTTPError as error:
        if error.code in (404, 410):
            # The URL itself stays out of the message: a signed URL carries its credentials in the query.
            message = f"the source URL answered HTTP {error.code}"
            raise RunnerFailure(EXIT_SOURCE_NOT_FOUND, "SourceNotFound", message) from None
        raise


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
