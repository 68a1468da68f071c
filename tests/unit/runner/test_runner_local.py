"""The runner's pipeline on real speech: espeak-ng voices, faster-whisper models, PyAV decoding."""

import re
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path

import jiwer
import pytest
from faster_whisper import WhisperModel

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.contract import EXIT_BAD_INPUT, RunnerLimits
from kubescribe.runner import transcribe as transcribe_module
from kubescribe.runner.errors import RunnerFailure
from kubescribe.runner.models import resolve_model
from kubescribe.runner.source import SAMPLE_RATE, load_audio
from kubescribe.runner.transcribe import load_model, transcribe
from tests.integration.speech import PASSAGE, speak

ENGLISH = "The quick brown fox jumps over the lazy dog. Please send the report to the office before noon on Friday."
GERMAN = "Guten Morgen. Heute ist das Wetter sehr schön, und wir gehen in den Park."
# tiny.en hears espeak's robotic voice well but not perfectly: it writes "quick round fox jump" here, a WER of
# 0.10. The threshold leaves room for other CPUs and library versions while still failing on garbage.
MAX_WER = 0.35
MAX_SECONDS = RunnerLimits().max_duration_seconds


def _no_model_download() -> None:
    raise AssertionError("no S3 client is needed")


def _speak(directory: Path, text: str, voice: str = "en") -> Path:
    raw, audio = directory / f"{voice}-raw.wav", directory / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", str(audio)], check=True)
    return audio


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def _spec(**fields: object) -> TranscriptionJobSpec:
    return TranscriptionJobSpec.model_validate({"source": {"url": "https://example.org/a.wav"}, **fields})


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _speak(tmp_path_factory.mktemp("speech"), ENGLISH)


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> WhisperModel:
    cache = tmp_path_factory.mktemp("models")
    return load_model(resolve_model("tiny.en", cache, _no_model_download), str(cache))


@pytest.mark.parametrize("options", [{}, {"vad": False, "wordTimestamps": True, "beamSize": 1}])
def test_transcribes_english_speech(english: Path, tiny_en: WhisperModel, options: dict[str, object]) -> None:
    audio = load_audio(english, MAX_SECONDS)
    progress: list[float] = []
    transcript = transcribe(tiny_en, audio, _spec(options=options), progress.append)

    hypothesis = " ".join(segment.text for segment in transcript.segments)
    assert jiwer.wer(_words(ENGLISH), _words(hypothesis)) < MAX_WER
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.001)
    assert progress == sorted(progress)
    assert 0 < progress[-1] <= transcript.duration + 0.1
    words = transcript.segments[0].words
    assert (words is not None) == bool(options.get("wordTimestamps"))


@pytest.fixture(scope="module")
def passage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About two minutes of speech: five chunks for the batched pipeline, four windows for sequential decoding."""
    return speak(tmp_path_factory.mktemp("passage"), "passage", PASSAGE, repeat=3)


@pytest.mark.parametrize("vad", [True, False])
def test_progress_grows_while_the_audio_is_decoded(
    passage: Path, tiny_en: WhisperModel, monkeypatch: pytest.MonkeyPatch, vad: bool
) -> None:
    monkeypatch.setattr(transcribe_module, "CPU_BATCH_SIZE", 2)
    monkeypatch.setattr(transcribe_module, "GPU_BATCH_SIZE", 2)
    audio = load_audio(passage, MAX_SECONDS)
    reports: list[tuple[float, float]] = []
    started = time.monotonic()
    transcript = transcribe(
        tiny_en,
        audio,
        _spec(language="en", options={"vad": vad}),
        lambda seconds: reports.append((time.monotonic() - started, seconds)),
    )
    took = time.monotonic() - started

    progress = [seconds for _, seconds in reports]
    assert progress == sorted(set(progress))
    assert len(progress) >= 3
    assert all(0 < seconds < transcript.duration for seconds in progress[:-1])
    assert progress[-1] == transcript.segments[-1].end
    assert reports[-1][0] - reports[0][0] > took / 4  # as the decoding goes, not all at its end
    if vad:  # one report a batch of two chunks, at its end, rather than one a segment
        segments = transcript.segments
        assert set(progress) == {segment.end for segment in segments[1::2]} | {segments[-1].end}


def _write_silent_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(b"")


BAD_AUDIO: dict[str, tuple[Callable[[Path], object], str]] = {
    "empty": (lambda path: path.write_bytes(b""), "the source is empty (0 bytes)"),
    "text": (lambda path: path.write_text("these are words, not sounds\n"), "the source is not audio: "),
    "zero-length": (_write_silent_wav, "the source has no audio samples"),
}


@pytest.mark.parametrize("kind", BAD_AUDIO)
def test_bad_audio_is_rejected(tmp_path: Path, kind: str) -> None:
    write, message = BAD_AUDIO[kind]
    path = tmp_path / "source.wav"
    write(path)
    with pytest.raises(RunnerFailure) as failure:
        load_audio(path, MAX_SECONDS)
    assert (failure.value.exit_code, failure.value.reason) == (EXIT_BAD_INPUT, "BadAudio")
    assert failure.value.message.startswith(message)


def test_base_model_detects_german(tmp_path: Path) -> None:
    audio = load_audio(_speak(tmp_path, GERMAN, voice="de"), MAX_SECONDS)
    cache = tmp_path / "models"
    model_dir = resolve_model("base", cache, _no_model_download)
    assert model_dir == str(cache / "base")
    model = load_model(model_dir, str(cache))

    transcript = transcribe(model, audio, _spec(model="base"))

    assert transcript.language == "de"
    assert transcript.language_probability > 0.5
    assembled = cache / "base" / "model.bin"
    written = assembled.stat().st_mtime_ns
    assert resolve_model("base", cache, _no_model_download) == model_dir
    assert assembled.stat().st_mtime_ns == written


def test_loads_a_model_directory_from_the_cache(tmp_path: Path, english: Path) -> None:
    packaged = Path(resolve_model("tiny.en", tmp_path / "empty", _no_model_download))
    cached = tmp_path / "cache" / "small.en"
    cached.mkdir(parents=True)
    for file in packaged.iterdir():
        (cached / file.name).symlink_to(file)

    model_dir = resolve_model("small.en", tmp_path / "cache", _no_model_download)

    assert model_dir == str(cached)
    transcript = transcribe(load_model(model_dir, str(tmp_path)), load_audio(english, MAX_SECONDS), _spec())
    assert "fox" in _words(" ".join(segment.text for segment in transcript.segments))


@pytest.mark.parametrize("model", ["small", "Systran/faster-whisper-tiny"])
def test_other_models_go_to_faster_whisper_by_name(tmp_path: Path, model: str) -> None:
    assert resolve_model(model, tmp_path, _no_model_download) == model
