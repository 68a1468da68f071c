"""Diarization: its error rate on conversations of distinct espeak-ng voices taking turns, and its time against the
transcription's, both in this process on the same audio with tiny.en on the CPU, as the runner does them."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.runner.diarize import diarize, speaker_count
from kubescribe.runner.formats import Transcript
from kubescribe.runner.models import resolve_model
from kubescribe.runner.transcribe import load_model, transcribe
from kubescribe.runner.voice import load_encoder

SAMPLE_RATE = 16000
PAUSE_SECONDS = 0.6
FRAME_SECONDS = 0.01
COLLAR_SECONDS = 0.25
"""Around each reference turn's edges, as NIST's scoring leaves out: the edges of speech are not exact."""
ROUNDS = 3
TURNS = [
    "Good morning, and thank you for coming in to talk about the new cluster today.",
    "Thanks for having me. I have been looking forward to this conversation for a few weeks.",
    "Let us start with the scheduler. How does it decide where each pod should run?",
    "It looks at the memory and the processors that every node has free, and then it picks the best one.",
    "And what happens when a machine fails in the middle of the night?",
    "The controller notices that the node is gone, and it starts the work again on another machine.",
    "How long does that usually take, from the failure to the work running again?",
    "A few minutes at most. Most of that time is spent waiting to be sure the node is really gone.",
    "What about the recordings themselves? Where do the transcripts end up?",
    "Every transcript is stored next to its recording, with the time and the speaker of each sentence.",
    "That sounds useful for meetings. Is there anything you would change about it?",
    "I would like the small models to be a little more accurate, but they are already very fast.",
]
CONVERSATIONS = {
    "two speakers": ("en-us", "en-us+f4"),
    "three speakers": ("en-us", "en-us+f4", "en-gb-scotland+f1"),
}
"""espeak-ng voices: a man, a woman, a Scottish woman."""

Reference = list[tuple[float, float, str]]


def speak(directory: Path, name: str, text: str, voice: str) -> npt.NDArray[np.float32]:
    raw, wav = directory / f"{name}.espeak.wav", directory / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    with wave.open(str(wav)) as audio:
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype=np.int16)
    return samples.astype(np.float32) / 32768


def conversation(directory: Path, voices: tuple[str, ...]) -> tuple[npt.NDArray[np.float32], Reference]:
    """The turns spoken by the voices in rotation, a pause after each, and when each voice spoke."""
    pieces, reference, at = [], [], 0.0
    pause = np.zeros(round(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    for number, text in enumerate(TURNS):
        voice = voices[number % len(voices)]
        samples = speak(directory, f"{len(voices)}-{number}", text, voice)
        seconds = len(samples) / SAMPLE_RATE
        reference.append((at, at + seconds, voice))
        pieces += [samples, pause]
        at += seconds + PAUSE_SECONDS
    return np.concatenate(pieces), reference


def _frames(spans: list[tuple[float, float, str]], count: int) -> list[str | None]:
    """Who speaks in each 10 ms frame; None where nobody does."""
    frames: list[str | None] = [None] * count
    for start, end, speaker in spans:
        for frame in range(round(start / FRAME_SECONDS), min(count, round(end / FRAME_SECONDS))):
            frames[frame] = speaker
    return frames


def error_rate(reference: Reference, hypothesis: Reference, duration: float, collar: float = 0.0) -> dict[str, float]:
    """The diarization error rate, (missed + false alarm + confusion) / reference speech, frame by frame, under the
    mapping of hypothesis labels to reference speakers that makes it least; frames within `collar` seconds of a
    reference turn's start or end are not scored."""
    count = round(duration / FRAME_SECONDS) + 1
    scored = [
        frame
        for frame in range(count)
        if all(abs(frame * FRAME_SECONDS - edge) > collar for start, end, _ in reference for edge in (start, end))
    ]
    truth_all, guess_all = _frames(reference, count), _frames(hypothesis, count)
    truth, guess = [truth_all[frame] for frame in scored], [guess_all[frame] for frame in scored]
    speech = sum(frame is not None for frame in truth)
    missed = sum(t is not None and g is None for t, g in zip(truth, guess, strict=True))
    false_alarm = sum(t is None and g is not None for t, g in zip(truth, guess, strict=True))
    speakers = sorted({s for s in truth if s is not None})
    labels = sorted({g for g in guess if g is not None})
    padded = speakers + [None] * max(0, len(labels) - len(speakers))
    both = [(t, g) for t, g in zip(truth, guess, strict=True) if t is not None and g is not None]
    confusion = (
        min(
            sum(mapping.get(g) != t for t, g in both)
            for mapping in (
                dict(zip(labels, order, strict=True)) for order in itertools.permutations(padded, len(labels))
            )
        )
        if labels
        else 0
    )
    return {
        "der": round((missed + false_alarm + confusion) / speech, 4),
        "missed": round(missed / speech, 4),
        "false_alarm": round(false_alarm / speech, 4),
        "confusion": round(confusion / speech, 4),
    }


def _spans(transcript: Transcript) -> Reference:
    return [(segment.start, segment.end, segment.speaker or "") for segment in transcript.segments]


def measure(work: Path) -> dict[str, Any]:
    directory = work / "diarization"
    directory.mkdir(exist_ok=True)
    model = load_model(resolve_model("tiny.en", work / "models", lambda: None), str(work / "models"))  # type: ignore[arg-type]
    encoder = load_encoder()
    plain = TranscriptionJobSpec.model_validate({"source": {"url": "https://bench.invalid/a.wav"}})
    diarized = plain.model_copy(update={"options": plain.options.model_copy(update={"diarize": True})})
    results: dict[str, Any] = {}
    for name, voices in CONVERSATIONS.items():
        audio, reference = conversation(directory, voices)
        duration = len(audio) / SAMPLE_RATE
        plain_seconds, words_seconds, diarize_seconds, errors = [], [], [], []
        for _ in range(ROUNDS):
            started = time.monotonic()
            transcribe(model, audio, plain)
            plain_seconds.append(time.monotonic() - started)
            started = time.monotonic()
            transcript = transcribe(model, audio, diarized)
            words_seconds.append(time.monotonic() - started)
            started = time.monotonic()
            labelled = diarize(transcript, audio, encoder)
            diarize_seconds.append(time.monotonic() - started)
            errors.append(
                {
                    "speakers_found": speaker_count(labelled),
                    **error_rate(reference, _spans(labelled), duration),
                    "der_collar": error_rate(reference, _spans(labelled), duration, COLLAR_SECONDS)["der"],
                }
            )
        plain_median, words_median = statistics.median(plain_seconds), statistics.median(words_seconds)
        diarize_median = statistics.median(diarize_seconds)
        results[name] = {
            "voices": list(voices),
            "audio_seconds": round(duration, 2),
            "turns": len(reference),
            # The round of the median error rate: the transcription, and so the segments, can differ between rounds.
            **sorted(errors, key=lambda round_: round_["der"])[len(errors) // 2],
            "der_each_round": [round_["der"] for round_ in errors],
            "transcribe_seconds": [round(s, 3) for s in plain_seconds],
            "transcribe_with_words_seconds": [round(s, 3) for s in words_seconds],
            "diarize_seconds": [round(s, 3) for s in diarize_seconds],
            "ratio_diarize_to_transcribe": round(diarize_median / plain_median, 3),
            "ratio_diarized_job_to_plain": round((words_median + diarize_median) / plain_median, 3),
        }
    return {"rounds": ROUNDS, "conversations": results}
