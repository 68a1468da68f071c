"""The check that an upload is audio, before any job is made for it."""

from __future__ import annotations

from typing import BinaryIO

import av

MIN_SECONDS = 0.1


class NotAudio(ValueError):
    pass


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
