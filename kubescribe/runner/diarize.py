"""Who spoke when: each transcript segment labelled with its speaker.

The speech of each segment is cut into windows of 1.6 s every 0.8 s (a shorter segment is one window), each window
gets a voice embedding, and the windows are clustered into speakers (`clustering`). A segment without word
timestamps takes the speaker of most of its windows; one with words is split where its words' speakers change, each
word taking the speaker of the window whose middle is nearest, and a turn shorter than MIN_TURN_SECONDS joining its
neighbour. Speakers are named SPEAKER_00, SPEAKER_01, ... in order of first appearance.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from kubescribe.runner.clustering import cluster
from kubescribe.runner.formats import Segment, Transcript, Word
from kubescribe.runner.voice import SAMPLE_RATE, Array, VoiceEncoder, embed_clips

WINDOW_SECONDS = 1.6
HOP_SECONDS = 0.8
MIN_TURN_SECONDS = 1.0


@dataclass(frozen=True)
class Window:
    segment: int
    """Index of the segment the window is in."""
    start: float
    end: float

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2


def windows(segments: Sequence[Segment]) -> list[Window]:
    """The windows of each segment's speech, in order."""
    found = []
    for index, segment in enumerate(segments):
        end = max(segment.end, segment.start)
        for number in itertools.count():
            start = round(segment.start + number * HOP_SECONDS, 3)
            found.append(Window(index, start, round(min(end, start + WINDOW_SECONDS), 3)))
            if start + WINDOW_SECONDS >= end:
                break
    return found


def diarize(
    transcript: Transcript,
    audio: Array,
    encoder: VoiceEncoder,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> Transcript:
    """The transcript with a speaker on every segment, segments split where the speaker changes within them."""
    found = windows(transcript.segments)
    clips = [audio[round(window.start * SAMPLE_RATE) : round(window.end * SAMPLE_RATE)] for window in found]
    labels = cluster(embed_clips(encoder, clips), min_clusters=min_speakers or 1, max_clusters=max_speakers)
    return label_segments(transcript, found, labels)


def label_segments(transcript: Transcript, found: Sequence[Window], labels: Sequence[int]) -> Transcript:
    """The transcript's segments labelled from the clusters of their windows, numbered again from 1."""
    by_segment: dict[int, list[tuple[Window, int]]] = {}
    for window, label in zip(found, labels, strict=True):
        by_segment.setdefault(window.segment, []).append((window, label))
    turns = [turn for index, segment in enumerate(transcript.segments) for turn in _turns(segment, by_segment[index])]
    names: dict[int, str] = {}
    segments = [
        replace(segment, id=number, speaker=names.setdefault(label, f"SPEAKER_{len(names):02d}"))
        for number, (segment, label) in enumerate(turns, start=1)
    ]
    return replace(transcript, segments=segments)


def speaker_count(transcript: Transcript) -> int:
    return len({segment.speaker for segment in transcript.segments if segment.speaker is not None})


def _turns(segment: Segment, labelled: list[tuple[Window, int]]) -> list[tuple[Segment, int]]:
    """The segment as one or more turns, each with its cluster."""
    if not segment.words:
        return [(segment, Counter(label for _, label in labelled).most_common(1)[0][0])]
    word_labels = [min(labelled, key=lambda item: abs(item[0].middle - _middle(word)))[1] for word in segment.words]
    runs = [
        (label, [word for word, _ in group])
        for label, group in itertools.groupby(zip(segment.words, word_labels, strict=True), key=lambda item: item[1])
    ]
    runs = _absorb_short_runs(runs)
    if len(runs) == 1:
        return [(segment, runs[0][0])]
    return [
        (
            Segment(
                segment.id,
                segment.start if number == 0 else words[0].start,
                segment.end if number == len(runs) - 1 else words[-1].end,
                "".join(word.word for word in words),
                words,
            ),
            label,
        )
        for number, (label, words) in enumerate(runs)
    ]


def _absorb_short_runs(runs: list[tuple[int, list[Word]]]) -> list[tuple[int, list[Word]]]:
    """Runs of one speaker's words, each shorter than MIN_TURN_SECONDS joined to the run before it (the first to the
    one after), then neighbours of one speaker joined."""
    kept: list[tuple[int, list[Word]]] = []
    pending: list[Word] = []
    for label, words in runs:
        if words[-1].end - words[0].start < MIN_TURN_SECONDS and len(runs) > 1:
            if kept:
                kept[-1] = (kept[-1][0], kept[-1][1] + words)
            else:
                pending += words
            continue
        kept.append((label, pending + words))
        pending = []
    if not kept:
        return [(runs[0][0], [word for _, words in runs for word in words])]
    if pending:
        kept[-1] = (kept[-1][0], kept[-1][1] + pending)
    merged: list[tuple[int, list[Word]]] = []
    for label, group in itertools.groupby(kept, key=lambda run: run[0]):
        merged.append((label, [word for _, words in group for word in words]))
    return merged


def _middle(word: Word) -> float:
    return (word.start + word.end) / 2
