"""Who spoke when: each transcript segment labelled with its speaker.

The speech of each segment is cut into windows of 1.6 s every 0.8 s (a shorter segment is one window), each window
gets a voice embedding, and the windows are clustered into speakers (`clustering`). A segment without word
timestamps takes the speaker of most of its windows; one with words is split where its words' speakers change, each
word taking the speaker of the window whose middle is nearest, a turn shorter than MIN_TURN_SECONDS joining the
neighbour nearer in time, and each change of speaker moved to the longest pause between words near it. Speakers are
named SPEAKER_00, SPEAKER_01, ... in order of first appearance.
"""

from __future__ import annotations

import itertools
import math
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
    runs = _absorb_short_runs(_at_pauses(_absorb_short_runs(runs)))
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
    """Runs of one speaker's words, each shorter than MIN_TURN_SECONDS (shortest first) joined to the neighbour it is
    nearer to in time: speech that goes on without a pause is most likely the same speaker's."""
    runs = _joined(runs)
    while len(runs) > 1:
        lengths = [words[-1].end - words[0].start for _, words in runs]
        shortest = min(range(len(runs)), key=lengths.__getitem__)
        if lengths[shortest] >= MIN_TURN_SECONDS:
            break
        words = runs[shortest][1]
        before = words[0].start - runs[shortest - 1][1][-1].end if shortest > 0 else math.inf
        after = runs[shortest + 1][1][0].start - words[-1].end if shortest < len(runs) - 1 else math.inf
        into = shortest - 1 if before <= after else shortest + 1
        runs[shortest] = (runs[into][0], words)
        runs = _joined(runs)
    return runs


def _joined(runs: list[tuple[int, list[Word]]]) -> list[tuple[int, list[Word]]]:
    """Neighbouring runs of one speaker as one."""
    return [
        (label, [word for _, words in group for word in words])
        for label, group in itertools.groupby(runs, key=lambda run: run[0])
    ]


def _at_pauses(runs: list[tuple[int, list[Word]]]) -> list[tuple[int, list[Word]]]:
    """Each change of speaker moved to the longest pause between words within WINDOW_SECONDS of it: windows place a
    change only roughly, and people take turns at pauses."""
    words = [word for _, run in runs for word in run]
    firsts = list(itertools.accumulate(len(run) for _, run in runs))
    bounds = [0]
    for number, first in enumerate(firsts[:-1]):
        candidates = [
            index
            for index in range(bounds[-1] + 1, firsts[number + 1])
            if abs(words[index].start - words[first].start) <= WINDOW_SECONDS
        ]
        bounds.append(max(candidates, key=lambda index: (words[index].start - words[index - 1].end, index == first)))
    bounds.append(len(words))
    labels = [label for label, _ in runs]
    return [(label, words[start:end]) for label, (start, end) in zip(labels, itertools.pairwise(bounds), strict=True)]


def _middle(word: Word) -> float:
    return (word.start + word.end) / 2
