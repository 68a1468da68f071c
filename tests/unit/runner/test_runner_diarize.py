"""Diarization on real voices: Resemblyzer's pretrained weights read without PyTorch, embeddings of espeak-ng voices,
their clustering, and a conversation transcribed by tiny.en and labelled by speaker."""

import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.runner.checkpoint import CheckpointError, read_checkpoint
from kubescribe.runner.clustering import cluster
from kubescribe.runner.diarize import Window, diarize, label_segments, speaker_count, windows
from kubescribe.runner.formats import Segment, Transcript, Word
from kubescribe.runner.models import resolve_model
from kubescribe.runner.transcribe import load_model, transcribe
from kubescribe.runner.voice import VoiceEncoder, embed_clips, load_encoder, weights_path
from tests.integration.speech import INTERVIEW, VOICES, conversation, speak

MAN, WOMAN = VOICES
SCOT = "en-gb-scotland+f1"
SENTENCES = [
    "The scheduler places each pod on a node with enough memory and processors.",
    "When a node fails, the controller starts the work again on another machine.",
]


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as audio:
        return np.frombuffer(audio.readframes(audio.getnframes()), dtype=np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def encoder() -> VoiceEncoder:
    return load_encoder()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voices")


def _voice(directory: Path, voice: str, sentence: int) -> np.ndarray:
    return _samples(speak(directory, f"{voice}-{sentence}", SENTENCES[sentence], voice))


def test_the_pretrained_weights_load_into_numpy_without_torch(encoder: VoiceEncoder) -> None:
    assert [layer.hidden_weights.shape for layer in encoder.layers] == [(1024, 256)] * 3
    assert encoder.layers[0].input_weights.shape == (1024, 40)
    assert encoder.projection.shape == (256, 256)
    assert all(np.isfinite(layer.input_weights).all() for layer in encoder.layers)
    assert "torch" not in sys.modules


def test_a_checkpoint_that_names_any_other_global_is_refused() -> None:
    path = weights_path()
    assert path is not None
    hostile = path.read_bytes().replace(b"ccollections\nOrderedDict\n", b"cos\nsystem\n", 1)
    with pytest.raises(CheckpointError, match=r"os\.system"):
        read_checkpoint(hostile)


def test_a_checkpoint_cut_short_is_refused() -> None:
    path = weights_path()
    assert path is not None
    with pytest.raises(CheckpointError, match="cut short"):
        read_checkpoint(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError):
        read_checkpoint(b"not a checkpoint")


def test_one_voice_is_closer_to_itself_than_to_another(encoder: VoiceEncoder, speech: Path) -> None:
    man, man_again, woman, scot = embed_clips(
        encoder,
        [_voice(speech, MAN, 0), _voice(speech, MAN, 1), _voice(speech, WOMAN, 1), _voice(speech, SCOT, 1)],
    )
    assert np.linalg.norm(man) == pytest.approx(1, abs=1e-5)
    assert man @ man_again > man @ woman + 0.1
    assert man @ man_again > man @ scot + 0.1


def _windows_of(clip: np.ndarray) -> list[np.ndarray]:
    return [clip[start : start + 25600] for start in range(0, len(clip) - 25600, 12800)]


def test_two_voices_cluster_into_two_speakers(encoder: VoiceEncoder, speech: Path) -> None:
    man = _windows_of(np.concatenate([_voice(speech, MAN, 0), _voice(speech, MAN, 1)]))
    woman = _windows_of(np.concatenate([_voice(speech, WOMAN, 0), _voice(speech, WOMAN, 1)]))
    labels = cluster(embed_clips(encoder, man + woman))
    assert set(labels[: len(man)]) == {0}
    assert set(labels[len(man) :]) == {1}


def test_cluster_bounds_are_honoured(encoder: VoiceEncoder, speech: Path) -> None:
    clips = _windows_of(_voice(speech, MAN, 0)) + _windows_of(_voice(speech, WOMAN, 0))
    embeddings = embed_clips(encoder, clips)
    assert set(cluster(embeddings, max_clusters=1)) == {0}
    assert len(set(cluster(embeddings, min_clusters=3))) == 3
    assert len(set(cluster(embeddings, min_clusters=len(clips) + 5))) == len(clips)
    assert cluster(embeddings[:0]) == []


def test_a_segment_is_split_where_its_words_change_speaker() -> None:
    words = [Word(0.0, 0.5, " One", 1), Word(0.5, 1.0, " two", 1), Word(1.0, 1.5, " three.", 1)]
    words += [Word(2.0, 2.5, " Four", 1), Word(2.5, 3.0, " five", 1), Word(3.0, 3.5, " six.", 1)]
    transcript = Transcript("en", 1, 10, [Segment(1, 0.0, 3.6, " One two three. Four five six.", words)])
    found = windows(transcript.segments)
    assert found == [Window(0, 0.0, 1.6), Window(0, 0.8, 2.4), Window(0, 1.6, 3.2), Window(0, 2.4, 3.6)]
    labelled = label_segments(transcript, found, [4, 4, 7, 7])
    assert [(s.id, s.start, s.end, s.text, s.speaker) for s in labelled.segments] == [
        (1, 0.0, 1.5, " One two three.", "SPEAKER_00"),
        (2, 2.0, 3.6, " Four five six.", "SPEAKER_01"),
    ]
    # The windows place the change a word early; it moves to the pause between the sentences.
    labelled = label_segments(transcript, found, [4, 7, 7, 7])
    assert [(s.text, s.speaker) for s in labelled.segments] == [
        (" One two three.", "SPEAKER_00"),
        (" Four five six.", "SPEAKER_01"),
    ]
    # A turn shorter than a second is a window's mistake, not a speaker: it joins its neighbour.
    labelled = label_segments(transcript, found, [4, 7, 4, 4])
    assert [(s.text, s.speaker) for s in labelled.segments] == [(" One two three. Four five six.", "SPEAKER_00")]


def test_a_segment_without_words_takes_the_speaker_of_most_of_its_windows() -> None:
    segments = [Segment(1, 0.0, 3.2, " First."), Segment(2, 4.0, 5.0, " Second."), Segment(3, 6.0, 7.0, " Third.")]
    transcript = Transcript("en", 1, 10, segments)
    found = windows(segments)
    labelled = label_segments(transcript, found, [3, 5, 3, 5, 3])
    assert [s.speaker for s in labelled.segments] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert speaker_count(labelled) == 2


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> WhisperModel:
    cache = tmp_path_factory.mktemp("models")
    return load_model(resolve_model("tiny.en", cache, lambda: None), str(cache))  # type: ignore[arg-type, return-value]


def _spoken_by(turns: list[tuple[float, float, str]], segment: Segment) -> str:
    """The voice that spoke most of the segment."""
    return max(turns, key=lambda turn: min(turn[1], segment.end) - max(turn[0], segment.start))[2]


def test_a_conversation_is_labelled_turn_by_turn(encoder: VoiceEncoder, tiny_en: WhisperModel, speech: Path) -> None:
    wav, turns = conversation(speech, "interview", INTERVIEW)
    audio = _samples(wav)
    spec = {"source": {"url": "https://example.org/a.wav"}, "options": {"diarize": True}}
    transcript = transcribe(tiny_en, audio, TranscriptionJobSpec.model_validate(spec))
    diarized = diarize(transcript, audio, encoder)
    assert speaker_count(diarized) == 2
    names = {MAN: "SPEAKER_00", WOMAN: "SPEAKER_01"}
    assert [segment.speaker for segment in diarized.segments] == [
        names[_spoken_by(turns, segment)] for segment in diarized.segments
    ]
    assert [segment.id for segment in diarized.segments] == list(range(1, len(diarized.segments) + 1))
    one_speaker = diarize(transcript, audio, encoder, max_speakers=1)
    assert {segment.speaker for segment in one_speaker.segments} == {"SPEAKER_00"}
