"""Real speech for the tests, spoken by espeak-ng, and how close a transcript is to it."""

from __future__ import annotations

import re
import subprocess
import wave
from pathlib import Path

import jiwer

PASSAGE = (
    "Kubernetes runs containers on a cluster of machines. A job describes work that runs to completion. "
    "The scheduler places each pod on a node with enough memory and processors. "
    "When a node fails, the controller starts the work again on another machine. "
    "Speech recognition turns spoken words into written text. "
    "The model listens to thirty seconds of audio at a time and writes down what it hears. "
    "Small models are fast and large models are accurate. "
    "Every transcript is stored next to the recording, with the time of each sentence. "
    "Subtitles show the words on the screen while the speaker talks. "
    "The operator watches every request and reports its progress until the work is done."
)
"""About 45 seconds at espeak-ng's default speed."""

GERMAN = "Guten Morgen. Heute ist ein schöner Tag, und wir gehen zusammen in den Park, um spazieren zu gehen."

NAME = "Zyphora Quellbright"
SENTENCE_WITH_A_NAME = f"Please send the report to {NAME} before Friday."
"""A made-up name, which tiny.en hears as "live for a quail right" unless told of it."""


def speak(directory: Path, name: str, text: str, voice: str = "en-us", repeat: int = 1) -> Path:
    """A 16 kHz mono WAV of `text` (spoken `repeat` times), made once per directory."""
    wav = directory / f"{name}.wav"
    if not wav.exists():
        raw = directory / f"{name}.raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), " ".join([text] * repeat)], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(wav)], check=True)
        raw.unlink()
    return wav


def duration_seconds(wav: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(wav)], capture_output=True, text=True, check=True).stdout)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(_words(reference), _words(hypothesis)))


INTERVIEW = [
    "Good morning, thank you for coming in today to talk about the new cluster.",
    "Thanks for having me. I have been looking forward to this conversation for a while.",
    "Let us start with the scheduler. How does it decide where each pod goes?",
    "It looks at the memory and processors that every node has free, and picks the best one.",
]
"""Four turns of an interview, for two voices taking turns."""
VOICES = ("en-us", "en-us+f4")
"""Two espeak-ng voices that a speaker encoder tells apart: a man's and a woman's."""


def conversation(
    directory: Path, name: str, turns: list[str], voices: tuple[str, ...] = VOICES, pause: float = 0.5
) -> tuple[Path, list[tuple[float, float, str]]]:
    """A 16 kHz mono WAV of the turns spoken by the voices in rotation with a pause after each, and when each turn
    was spoken: (start, end, voice)."""
    samples, spoken, at = bytearray(), [], 0.0
    silence = bytes(2 * round(16000 * pause))
    for number, text in enumerate(turns):
        voice = voices[number % len(voices)]
        with wave.open(str(speak(directory, f"{name}-{number}", text, voice))) as turn:
            frames = turn.readframes(turn.getnframes())
        seconds = len(frames) / 2 / 16000
        spoken.append((at, at + seconds, voice))
        samples += frames + silence
        at += seconds + pause
    wav = directory / f"{name}.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(samples))
    return wav, spoken
