"""Getting the audio: S3 access, streamed downloads, and the check that the download is audio at all."""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from minio import Minio
from minio.error import S3Error

from kubescribe import egress, s3
from kubescribe.api.v1alpha1 import Source
from kubescribe.contract import EXIT_BAD_INPUT, EXIT_SOURCE_NOT_FOUND, EgressRules, StoreGrants
from kubescribe.runner.config import S3Settings
from kubescribe.runner.errors import RunnerFailure, bad_audio
from kubescribe.runner.transfer import Cap, download, download_source, save, too_large

SAMPLE_RATE = 16000
"""What Whisper listens at; the audio is decoded and resampled to it."""
GROUP_SAMPLES = 500000
"""Source samples resampled at once: faster-whisper's grouping, so that the result is the same."""
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


def fetch(
    source: Source, s3: S3Settings, grants: StoreGrants | None, rules: EgressRules, destination: Path, *, cap: Cap
) -> None:
    """Download the source to `destination` within `cap`, streaming it to disk: through the job's presigned URL
    when it is in the operator's store, else with the job's own credentials, or from its URL; the last two where
    `rules` permit."""
    if grants is not None and grants.source is not None:
        download(grants.source.url, destination, grants.source.uri, cap)
        return
    if source.s3:
        _fetch_own(
            source.s3.bucket, source.s3.key, s3_client(s3.with_endpoint(source.s3.endpoint), rules), destination, cap
        )
        return
    download_source(source.url or "", destination, rules, cap)


def _fetch_own(bucket: str, key: str, client: Minio, destination: Path, cap: Cap) -> None:
    """The source from the job's own store: its size is checked before a byte is read, then counted again."""
    uri = f"s3://{bucket}/{key}"
    started = time.monotonic()
    try:
        size = client.stat_object(bucket, key).size
        if size is not None and size > cap.max_bytes:
            raise too_large(uri, cap, size)
        response = client.get_object(bucket, key)
    except S3Error as error:
        if error.code in NOT_FOUND_CODES:
            raise RunnerFailure(
                EXIT_SOURCE_NOT_FOUND, "SourceNotFound", f"{uri} does not exist ({error.code})"
            ) from None
        raise
    try:
        save(
            response.read1,
            destination,
            uri,
            cap,
            content_length=response.headers.get("Content-Length"),
            started=started,
        )
    finally:
        response.close()
        response.release_conn()


def load_audio(path: Path, max_seconds: float) -> Audio:
    """Decode the file to 16 kHz mono samples, as faster_whisper.decode_audio does, holding at most `max_seconds`
    of them: a longer declared duration is refused before decoding, and decoding stops as soon as it passes the
    limit (AudioTooLong). A file that holds no audio fails with BadAudio."""
    if path.stat().st_size == 0:
        raise bad_audio("the source is empty (0 bytes)")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise bad_audio("the source has no audio stream")
            declared = declared_seconds(container)
            if declared is not None and declared > max_seconds:
                raise too_long(max_seconds, declared)
            audio = _decode(container, math.floor(max_seconds * SAMPLE_RATE), max_seconds)
    except av.FFmpegError as error:
        raise bad_audio(f"the source is not audio: {error.strerror}") from None
    if audio.size == 0:
        raise bad_audio("the source has no audio samples")
    return audio


def declared_seconds(container: av.container.InputContainer) -> float | None:
    """How long the file says its first audio stream is, when it says."""
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def too_long(max_seconds: float, declared: float | None = None) -> RunnerFailure:
    """AudioTooLong, with the duration the file declares when that is what is too long."""
    found = f"lasts {declared:.0f} s, more" if declared is not None else "lasts more"
    return RunnerFailure(
        EXIT_BAD_INPUT,
        "AudioTooLong",
        f"the audio {found} than {max_seconds:.0f} s, the longest this cluster transcribes (runner.maxDurationSeconds)",
    )


def _decode(container: av.container.InputContainer, max_samples: int, max_seconds: float) -> Audio:
    """The first audio stream as 16-bit mono at SAMPLE_RATE, then float32 in [-1, 1), exactly as faster-whisper
    decodes: frames grouped in a FIFO of GROUP_SAMPLES, resampled, flushed. Only the 16-bit samples are held while
    decoding, and never much more than `max_samples` of them."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[npt.NDArray[np.int16]] = []
    samples = 0
    for frame in _resampled(_grouped(_valid(container.decode(audio=0))), resampler):
        chunk = frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)
        samples += chunk.size
        if samples > max_samples:
            raise too_long(max_seconds)
        chunks.append(chunk)
    del resampler
    gc.collect()  # frees what the resampler holds, as faster-whisper does
    audio: Audio = np.concatenate(chunks, dtype=np.float32) if chunks else np.empty(0, np.float32)
    audio /= 32768.0
    return audio


def _valid(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """The frames up to the first that cannot be decoded (a truncated file's end)."""
    with contextlib.suppress(av.InvalidDataError):
        yield from frames


def _grouped(frames: Iterable[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    fifo = av.AudioFifo()
    for frame in frames:
        frame.pts = None  # the FIFO checks that timestamps follow on; a damaged file's need not
        fifo.write(frame)
        if fifo.samples >= GROUP_SAMPLES and (group := fifo.read()) is not None:
            yield group
    if (rest := fifo.read()) is not None:
        yield rest


def _resampled(frames: Iterable[av.AudioFrame], resampler: av.AudioResampler) -> Iterator[av.AudioFrame]:
    for frame in frames:
        yield from resampler.resample(frame)
    yield from resampler.resample(None)
