"""S3: the uploaded audio (checked to decode, then streamed to the store in parts) and the transcripts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote

import av
from minio import Minio
from urllib3 import BaseHTTPResponse

from kubescribe import s3
from kubescribe.gateway.settings import GatewaySettings

PART_SIZE = 8 << 20
CHUNK = 64 << 10
MIN_SECONDS = 0.1


class NotAudio(ValueError):
    pass


def s3_client(settings: GatewaySettings) -> Minio:
    return s3.client(
        settings.s3_endpoint, settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()
    )


def check_audio(file: BinaryIO) -> None:
    """Raises NotAudio unless the file has an audio stream of which the first 0.1 s decode."""
    file.seek(0)
    seconds = 0.0
    try:
        with av.open(file, mode="r") as container:
            if not container.streams.audio:
                raise NotAudio("the file has no audio stream")
            for frame in container.decode(audio=0):
                seconds += frame.samples / (frame.sample_rate or 1)
                if seconds >= MIN_SECONDS:
                    break
    except av.FFmpegError as error:
        raise NotAudio("the file is not audio that can be decoded") from error
    finally:
        file.seek(0)
    if seconds < MIN_SECONDS:
        raise NotAudio(f"the file has less than {MIN_SECONDS} s of decodable audio")


def put_upload(store: Minio, bucket: str, key: str, file: BinaryIO, *, size: int, filename: str) -> None:
    """Streams `file` to S3 one 8 MiB part at a time; the (percent-encoded) file name is kept as object metadata."""
    file.seek(0)
    store.put_object(
        bucket, key, file, size, part_size=PART_SIZE, num_parallel_uploads=1, metadata={"filename": quote(filename)}
    )


def parse_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_text(store: Minio, uri: str) -> str:
    return b"".join(chunks(open_object(store, uri))).decode()


def open_object(store: Minio, uri: str) -> BaseHTTPResponse:
    bucket, key = parse_uri(uri)
    return store.get_object(bucket, key)


def chunks(response: BaseHTTPResponse) -> Iterator[bytes]:
    """The object's bytes, a part at a time; the connection goes back to the pool at the end."""
    try:
        yield from response.stream(CHUNK)
    finally:
        response.close()
        response.release_conn()
