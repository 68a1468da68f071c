"""Transcription with faster-whisper.

Decoding goes through `BatchedInferencePipeline`, which cuts the audio at pauses found by voice
activity detection and decodes several of those chunks at once: on a two-core CPU that ran tiny.en
about seven times faster than sequential decoding of long speech, and on a GPU it keeps the device
busy. The cutting needs the VAD, so a spec that turns VAD off gets the sequential
`WhisperModel.transcribe`, which walks the audio in 30-second windows instead.

Both yield their segments as they decode, a batch or a window at a time (the batched pipeline after finding the
speech and computing its features in all the audio), so that progress is reported as decoding goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import ctranslate2
from faster_whisper import BatchedInferencePipeline, WhisperModel

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.runner.formats import Segment, Transcript, Word
from kubescribe.runner.source import SAMPLE_RATE, Audio

CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 16


def _on_gpu() -> bool:
    return bool(ctranslate2.get_cuda_device_count() > 0)


def load_model(model: str, download_root: str, num_workers: int = 1) -> WhisperModel:
    """Load a model directory or name: on the GPU in float16 when there is one, else on the CPU in int8. With
    `num_workers` above one, that many threads may transcribe with it at once."""
    device, compute_type = ("cuda", "float16") if _on_gpu() else ("cpu", "int8")
    return WhisperModel(
        model, device=device, compute_type=compute_type, download_root=download_root, num_workers=num_workers
    )


def transcribe(
    model: WhisperModel,
    audio: Audio,
    spec: TranscriptionJobSpec,
    on_progress: Callable[[float], None] = lambda _: None,
) -> Transcript:
    """Transcribe the samples as the spec asks, calling `on_progress` with the end in seconds of each batch of
    segments as it is decoded."""
    options = spec.options
    arguments: dict[str, Any] = {
        "language": spec.language,
        "task": spec.task,
        "beam_size": options.beam_size,
        "temperature": options.temperature,
        "initial_prompt": options.initial_prompt,
        "hotwords": options.hotwords,
        # Diarization splits segments where the speaker changes, at the words.
        "word_timestamps": options.word_timestamps or options.diarize,
        "vad_filter": options.vad,
    }
    if options.vad:
        batch_size = GPU_BATCH_SIZE if _on_gpu() else CPU_BATCH_SIZE
        found, info = BatchedInferencePipeline(model).transcribe(audio, batch_size=batch_size, **arguments)
    else:
        # A window's segments come out together, and how many varies: each is reported.
        batch_size = 1
        found, info = model.transcribe(audio, **arguments)
    return Transcript(
        language=info.language,
        language_probability=round(float(info.language_probability), 4),
        duration=round(len(audio) / SAMPLE_RATE, 3),
        segments=list(_segments(found, batch_size, on_progress)),
    )


def _segments(found: Iterable[Any], batch_size: int, on_progress: Callable[[float], None]) -> Iterable[Segment]:
    """The segments found, calling `on_progress` with the end of every `batch_size`th one and of the last.

    The batched pipeline yields the segments of a whole batch at once, one per chunk (it decodes without timestamps
    inside a chunk), so a batch ends at every `batch_size`th segment. Reporting each segment instead would send
    only a batch's first one: the rest come within the reporter's pace limit."""
    number, end = 0, 0.0
    for number, segment in enumerate(found, start=1):
        words = None
        if segment.words is not None:
            words = [_word(word) for word in segment.words]
        yield Segment(number, segment.start, segment.end, segment.text, words)
        end = segment.end
        if number % batch_size == 0:
            on_progress(end)
    if number % batch_size:
        on_progress(end)


def _word(word: Any) -> Word:
    return Word(round(float(word.start), 3), round(float(word.end), 3), word.word, round(float(word.probability), 4))
