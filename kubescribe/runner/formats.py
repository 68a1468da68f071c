"""A transcript and its renderings as json, txt, srt, vtt and tsv: pure functions of the transcript.

A diarized transcript's segments each have a speaker: json gives it, srt and vtt put it before each cue's text,
txt gives each turn (consecutive segments of one speaker) under a line naming the speaker, tsv adds a column."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class Transcript:
    language: str
    language_probability: float
    duration: float
    segments: list[Segment]

    def without_words(self) -> Transcript:
        return replace(self, segments=[replace(segment, words=None) for segment in self.segments])

    @property
    def diarized(self) -> bool:
        return any(segment.speaker is not None for segment in self.segments)


def timestamp(seconds: float, separator: str) -> str:
    """HH:MM:SS followed by `separator` and milliseconds; hours go past 99 if they must."""
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{milliseconds:03d}"


def to_json(transcript: Transcript) -> str:
    document = asdict(transcript)
    for segment in document["segments"]:
        segment["text"] = segment["text"].strip()
        for optional in ("words", "speaker"):
            if segment[optional] is None:
                del segment[optional]
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_txt(transcript: Transcript) -> str:
    if not transcript.diarized:
        return "".join(f"{segment.text.strip()}\n" for segment in transcript.segments)
    return "\n".join(
        f"{speaker}\n" + "".join(f"{segment.text.strip()}\n" for segment in turn)
        for speaker, turn in itertools.groupby(transcript.segments, key=lambda segment: segment.speaker)
    )


def _cue_text(segment: Segment) -> str:
    text = segment.text.strip()
    return f"{segment.speaker}: {text}" if segment.speaker is not None else text


def to_srt(transcript: Transcript) -> str:
    return "".join(
        f"{number}\n{timestamp(segment.start, ',')} --> {timestamp(segment.end, ',')}\n{_cue_text(segment)}\n\n"
        for number, segment in enumerate(transcript.segments, start=1)
    )


def to_vtt(transcript: Transcript) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(segment.start, '.')} --> {timestamp(segment.end, '.')}\n{_cue_text(segment)}\n\n"
        for segment in transcript.segments
    )


def to_tsv(transcript: Transcript) -> str:
    if not transcript.diarized:
        return "start\tend\ttext\n" + "".join(
            f"{round(segment.start * 1000)}\t{round(segment.end * 1000)}\t{_one_field(segment.text)}\n"
            for segment in transcript.segments
        )
    return "start\tend\tspeaker\ttext\n" + "".join(
        f"{round(segment.start * 1000)}\t{round(segment.end * 1000)}\t{segment.speaker}\t{_one_field(segment.text)}\n"
        for segment in transcript.segments
    )


def _one_field(text: str) -> str:
    return " ".join(text.split())


RENDERERS: dict[str, tuple[Callable[[Transcript], str], str]] = {
    "json": (to_json, "application/json"),
    "txt": (to_txt, "text/plain; charset=utf-8"),
    "srt": (to_srt, "application/x-subrip"),
    "vtt": (to_vtt, "text/vtt"),
    "tsv": (to_tsv, "text/tab-separated-values"),
}
"""Each format's renderer and content type."""
