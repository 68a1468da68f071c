"""A corpus of hostile audio, made here with espeak-ng, sox and ffmpeg: each file is refused with its reason or
decoded (and transcribed) as faster-whisper would, and decoding never holds more than the duration cap allows."""

import random
import re
import struct
import subprocess
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import jiwer
import numpy as np
import pytest
from faster_whisper import WhisperModel, decode_audio

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.contract import EXIT_BAD_INPUT
from kubescribe.runner.errors import RunnerFailure
from kubescribe.runner.models import resolve_model
from kubescribe.runner.source import SAMPLE_RATE, load_audio
from kubescribe.runner.transcribe import load_model, transcribe

FIRST_SENTENCE = "the quick brown fox jumps over the lazy dog"
SPEECH = f"{FIRST_SENTENCE.capitalize()}. Please send the report to the office before noon on Friday."
MAX_WER = 0.35
"""tiny.en hears espeak-ng's voice well but not perfectly ("the quick round fox jump over the lazy dog")."""
CAP_SECONDS = 600
"""The duration cap of these tests: ten minutes, far above the speech and far below the bombs."""
BOMB_SECONDS = 3 * 3600
QUIET_SECONDS = 2 * 3600
FLOAT32_BYTES = 4


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *arguments], check=True)


def silence(path: Path, seconds: int, rate: int) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"anullsrc=r={rate}:cl=mono", "-t", str(seconds), "-c:a", "flac", str(path))
    return path


def cut_in_half(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def flac_declaring(source: Path, path: Path, samples: int) -> Path:
    """`source` with its STREAMINFO's total sample count (the low 36 bits at byte 18) replaced by `samples`."""
    data = bytearray(source.read_bytes())
    assert data[:4] == b"fLaC"
    (fields,) = struct.unpack(">Q", data[18:26])
    data[18:26] = struct.pack(">Q", (fields & ~((1 << 36) - 1)) | samples)
    path.write_bytes(data)
    return path


def wav_declaring(source: Path, path: Path, data_bytes: int) -> Path:
    """`source` (a canonical 44-byte-header WAV) with its RIFF and data sizes claiming `data_bytes` of samples."""
    data = bytearray(source.read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = struct.pack("<I", data_bytes + 36)
    data[40:44] = struct.pack("<I", data_bytes)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("hostile")
    files: dict[str, Path] = {}
    raw, wav = directory / "raw.wav", directory / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(raw), SPEECH], check=True)
    subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", str(wav)], check=True)
    files["speech.wav"] = wav
    for extension, codec in (("mp3", "libmp3lame"), ("flac", "flac"), ("ogg", "libopus")):
        files[f"speech.{extension}"] = directory / f"speech.{extension}"
        ffmpeg("-i", str(wav), "-c:a", codec, str(files[f"speech.{extension}"]))
    for extension in ("wav", "mp3", "flac"):
        files[f"cut.{extension}"] = cut_in_half(files[f"speech.{extension}"], directory / f"cut.{extension}")
    files["ogg-named.wav"] = directory / "ogg-named.wav"
    files["ogg-named.wav"].write_bytes(files["speech.ogg"].read_bytes())
    files["mp3-named.flac"] = directory / "mp3-named.flac"
    files["mp3-named.flac"].write_bytes(files["speech.mp3"].read_bytes())
    files["huge-header.wav"] = wav_declaring(wav, directory / "huge-header.wav", 0x7FFFFF00)
    files["image.png"] = directory / "image.png"
    ffmpeg("-f", "lavfi", "-i", "color=red:s=64x64", "-frames:v", "1", str(files["image.png"]))
    files["random.wav"] = directory / "random.wav"
    files["random.wav"].write_bytes(random.Random(7).randbytes(300_000))
    files["empty.wav"] = directory / "empty.wav"
    files["empty.wav"].touch()
    files["bomb.flac"] = silence(directory / "bomb.flac", BOMB_SECONDS, 8000)
    files["lying-bomb.flac"] = flac_declaring(files["bomb.flac"], directory / "lying-bomb.flac", 8000)
    files["quiet.flac"] = silence(directory / "quiet.flac", QUIET_SECONDS, 8000)
    return files


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> WhisperModel:
    cache = tmp_path_factory.mktemp("models")
    return load_model(resolve_model("tiny.en", cache, lambda: pytest.fail("no S3 client is needed")), str(cache))


def refusal(path: Path) -> RunnerFailure:
    with pytest.raises(RunnerFailure) as failure:
        load_audio(path, CAP_SECONDS)
    assert failure.value.exit_code == EXIT_BAD_INPUT
    return failure.value


def peak_bytes(decode: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        decode()
    except RunnerFailure:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def heard(model: WhisperModel, audio: np.ndarray) -> str:
    spec = TranscriptionJobSpec.model_validate({"source": {"url": "https://example.org/a.wav"}})
    text = " ".join(segment.text for segment in transcribe(model, audio, spec).segments)
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@pytest.mark.parametrize(
    "name", ["speech.wav", "speech.mp3", "speech.flac", "speech.ogg", "cut.wav", "cut.mp3", "cut.flac"]
)
def test_decoding_in_a_stream_gives_what_faster_whisper_gives(corpus: dict[str, Path], name: str) -> None:
    audio = load_audio(corpus[name], CAP_SECONDS)
    assert audio.dtype == np.float32
    np.testing.assert_array_equal(audio, decode_audio(str(corpus[name]), sampling_rate=SAMPLE_RATE))


@pytest.mark.parametrize("extension", ["wav", "mp3", "flac"])
def test_a_file_cut_in_the_middle_gives_its_first_half(
    corpus: dict[str, Path], tiny_en: WhisperModel, extension: str
) -> None:
    whole = load_audio(corpus[f"speech.{extension}"], CAP_SECONDS)
    cut = load_audio(corpus[f"cut.{extension}"], CAP_SECONDS)
    assert 0.3 * whole.size < cut.size < 0.7 * whole.size
    words = heard(tiny_en, cut)
    assert jiwer.wer(FIRST_SENTENCE, words) < MAX_WER, words
    assert "friday" not in words


@pytest.mark.parametrize(("name", "as_named"), [("ogg-named.wav", "speech.ogg"), ("mp3-named.flac", "speech.mp3")])
def test_a_wrong_extension_is_no_obstacle(
    corpus: dict[str, Path], tiny_en: WhisperModel, name: str, as_named: str
) -> None:
    audio = load_audio(corpus[name], CAP_SECONDS)
    np.testing.assert_array_equal(audio, load_audio(corpus[as_named], CAP_SECONDS))
    assert "friday" in heard(tiny_en, audio)


def test_a_wav_header_declaring_hours_gives_only_the_samples_it_holds(corpus: dict[str, Path]) -> None:
    audio = load_audio(corpus["huge-header.wav"], CAP_SECONDS)
    np.testing.assert_array_equal(audio, load_audio(corpus["speech.wav"], CAP_SECONDS))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("image.png", "the source has no audio stream"),
        ("random.wav", "the source is not audio: Invalid data found when processing input"),
        ("empty.wav", "the source is empty (0 bytes)"),
    ],
)
def test_what_is_not_audio_is_refused_as_bad_audio(corpus: dict[str, Path], name: str, message: str) -> None:
    failure = refusal(corpus[name])
    assert (failure.reason, failure.message) == ("BadAudio", message)


def test_a_bomb_that_declares_its_length_is_refused_before_decoding(corpus: dict[str, Path]) -> None:
    assert corpus["bomb.flac"].stat().st_size < 4 << 20
    failure = refusal(corpus["bomb.flac"])
    assert failure.reason == "AudioTooLong"
    assert failure.message == (
        f"the audio lasts {BOMB_SECONDS} s, more than {CAP_SECONDS} s, the longest this cluster transcribes "
        "(runner.maxDurationSeconds)"
    )
    assert peak_bytes(lambda: load_audio(corpus["bomb.flac"], CAP_SECONDS)) < 1 << 20


def test_a_bomb_that_hides_its_length_is_stopped_at_the_cap(corpus: dict[str, Path]) -> None:
    failure = refusal(corpus["lying-bomb.flac"])
    assert failure.reason == "AudioTooLong"
    assert failure.message.startswith(f"the audio lasts more than {CAP_SECONDS} s")
    # Decoding it whole would hold 3 hours of float32 samples (691 MB); the cap's 10 minutes are 38 MB.
    peak = peak_bytes(lambda: load_audio(corpus["lying-bomb.flac"], CAP_SECONDS))
    assert peak < CAP_SECONDS * SAMPLE_RATE * FLOAT32_BYTES


def test_hours_of_silence_under_the_cap_are_decoded_within_twice_their_samples(corpus: dict[str, Path]) -> None:
    decoded: list[np.ndarray] = []
    peak = peak_bytes(lambda: decoded.append(load_audio(corpus["quiet.flac"], QUIET_SECONDS + 60)))
    [audio] = decoded
    assert audio.size == QUIET_SECONDS * SAMPLE_RATE
    assert not audio.any()
    assert peak < 2 * audio.nbytes
