"""A TranscriptionJob with diarize on the local cluster: two espeak-ng voices taking turns come back as two speakers,
in the result and in every transcript, each turn under the speaker who spoke it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import Kubescribe
from tests.integration.speech import INTERVIEW, VOICES, conversation, word_error_rate
from tests.integration.test_transcription import MAX_WER, SRT_TIME, cue_times


def _voice_at(turns: list[tuple[float, float, str]], second: float) -> str:
    """The voice of the turn nearest to the second (the one it falls in, if any)."""
    return min(turns, key=lambda turn: max(turn[0] - second, second - turn[1], 0))[2]


def test_a_two_voice_conversation_comes_back_turn_by_turn_under_two_speakers(
    kubescribe: Kubescribe, namespace: str, speech_dir: Path
) -> None:
    wav, turns = conversation(speech_dir, "interview", INTERVIEW)
    kubescribe.upload("audio", f"{namespace}/interview.wav", wav)
    kubescribe.submit(
        namespace,
        "interview",
        source={"s3": {"bucket": "audio", "key": f"{namespace}/interview.wav"}},
        options={"diarize": True, "maxSpeakers": 4},
        outputs={"formats": ["json", "txt", "srt", "vtt"]},
    )
    status = kubescribe.wait_finished(namespace, "interview")["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    result = status["result"]
    assert result["speakers"] == 2

    # The first voice is heard first, so it is SPEAKER_00.
    speaker_of = dict(zip(VOICES, ["SPEAKER_00", "SPEAKER_01"], strict=True))
    txt_turns = [turn.split("\n", 1) for turn in kubescribe.read(result["outputs"]["txt"]).strip().split("\n\n")]
    assert [speaker for speaker, _ in txt_turns] == [speaker_of[voice] for _, _, voice in turns]
    for (_, text), spoken in zip(txt_turns, INTERVIEW, strict=True):
        assert word_error_rate(spoken, text) < MAX_WER, (spoken, text)

    srt = kubescribe.read(result["outputs"]["srt"])
    cues = [cue.split("\n") for cue in srt.strip().split("\n\n")]
    for (start, end), (_, _, text) in zip(cue_times(srt, SRT_TIME), cues, strict=True):
        assert text.startswith(f"{speaker_of[_voice_at(turns, (start + end) / 2)]}: "), (start, end, text)
    assert "\nSPEAKER_01: " in kubescribe.read(result["outputs"]["vtt"])

    segments = json.loads(kubescribe.read(result["outputs"]["json"]))["segments"]
    assert {segment["speaker"] for segment in segments} == {"SPEAKER_00", "SPEAKER_01"}
    # The words diarization asked for are not given when the job did not ask for them.
    assert not any("words" in segment for segment in segments)
