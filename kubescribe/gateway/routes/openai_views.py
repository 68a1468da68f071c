"""OpenAI's audio API on top of TranscriptionJobs: which model a request means, which transcript a response format
needs, and the response bodies. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from kubescribe.api.v1alpha1 import Task
from kubescribe.gateway.routes.languages import language_name

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
OPENAI_MODEL = "whisper-1"
SOURCE_FORMAT: dict[str, str] = {"json": "json", "verbose_json": "json", "text": "txt", "srt": "srt", "vtt": "vtt"}


def resolve_model(requested: str, task: Task, language: str | None, default: str, multilingual: str) -> str:
    """The model a request's `model` means: whisper-1 is the default model, or the multilingual one where the
    default only knows English; any other name means itself."""
    if requested == OPENAI_MODEL:
        english_only = task == "transcribe" and language in (None, "", "en")
        return default if english_only or not default.endswith(".en") else multilingual
    return requested


def _segment(segment: dict[str, Any], temperature: float) -> dict[str, Any]:
    return {
        "id": segment["id"],
        "seek": 0,
        "start": segment["start"],
        "end": segment["end"],
        "text": segment["text"],
        "tokens": [],
        "temperature": temperature,
        "avg_logprob": 0.0,
        "compression_ratio": 0.0,
        "no_speech_prob": 0.0,
    }


def full_text(document: dict[str, Any]) -> str:
    return " ".join(segment["text"].strip() for segment in document["segments"]).strip()


def render_json(
    transcript: str, response_format: ResponseFormat, task: Task, granularities: Sequence[str], temperature: float
) -> dict[str, Any]:
    """The body of a json or verbose_json response, from the runner's json transcript."""
    document = json.loads(transcript)
    if response_format == "json":
        return {"text": full_text(document)}
    body: dict[str, Any] = {
        "task": task,
        "language": "english" if task == "translate" else language_name(document["language"]),
        "duration": document["duration"],
        "text": full_text(document),
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [_segment(segment, temperature) for segment in document["segments"]]
    if "word" in granularities:
        body["words"] = [
            {"word": word["word"].strip(), "start": word["start"], "end": word["end"]}
            for segment in document["segments"]
            for word in segment.get("words") or []
        ]
    return body
