import json
import re

import pytest

from kubescribe.runner.formats import (
    RENDERERS,
    Segment,
    Transcript,
    Word,
    timestamp,
    to_json,
    to_srt,
    to_tsv,
    to_txt,
    to_vtt,
)

SEGMENTS = [
    Segment(1, 0.0, 2.5, " Hello there.", [Word(0.0, 1.0, " Hello", 0.9), Word(1.0, 2.5, " there.", 0.8)]),
    Segment(2, 59.9996, 61.25, " A tab\there, spaces around.  "),
    Segment(3, 3725.5, 3727.004, "Past the hour."),
]
TRANSCRIPT = Transcript("en", 0.98, 3730.0, SEGMENTS)


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0, "00:00:00,000", "00:00:00.000"),
        (1.0004, "00:00:01,000", "00:00:01.000"),
        (59.9996, "00:01:00,000", "00:01:00.000"),
        (3599.9996, "01:00:00,000", "01:00:00.000"),
        (3725.5, "01:02:05,500", "01:02:05.500"),
        (360000.25, "100:00:00,250", "100:00:00.250"),
    ],
)
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert timestamp(seconds, ",") == srt
    assert timestamp(seconds, ".") == vtt


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = re.split(r":", stamp.replace(",", "."))
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_srt_parses_back() -> None:
    srt = to_srt(TRANSCRIPT)
    cues = srt.split("\n\n")
    assert cues[-1] == ""
    parsed = [cue.split("\n") for cue in cues[:-1]]
    assert [int(number) for number, _, _ in parsed] == [1, 2, 3]
    for (_, times, text), segment in zip(parsed, SEGMENTS, strict=True):
        start, end = times.split(" --> ")
        assert _seconds(start) == pytest.approx(segment.start, abs=0.0005)
        assert _seconds(end) == pytest.approx(segment.end, abs=0.0005)
        assert text == segment.text.strip()
    assert parsed[1][1] == "00:01:00,000 --> 00:01:01,250"


def test_vtt_parses_back() -> None:
    vtt = to_vtt(TRANSCRIPT)
    assert vtt.startswith("WEBVTT\n\n")
    cues = [cue.split("\n") for cue in vtt.removeprefix("WEBVTT\n\n").split("\n\n")[:-1]]
    assert [text for _, text in cues] == ["Hello there.", "A tab\there, spaces around.", "Past the hour."]
    assert cues[2][0] == "01:02:05.500 --> 01:02:07.004"


def test_tsv_in_milliseconds_one_line_per_segment() -> None:
    rows = [line.split("\t") for line in to_tsv(TRANSCRIPT).splitlines()]
    assert rows == [
        ["start", "end", "text"],
        ["0", "2500", "Hello there."],
        ["60000", "61250", "A tab here, spaces around."],
        ["3725500", "3727004", "Past the hour."],
    ]


def test_txt_is_the_stripped_text() -> None:
    assert to_txt(TRANSCRIPT) == "Hello there.\nA tab\there, spaces around.\nPast the hour.\n"
    assert to_txt(Transcript("en", 1.0, 0.0, [])) == ""


def test_json_keeps_everything() -> None:
    document = json.loads(to_json(TRANSCRIPT))
    assert document["language"] == "en"
    assert document["language_probability"] == 0.98
    assert document["duration"] == 3730.0
    first, second, _ = document["segments"]
    assert first == {
        "id": 1,
        "start": 0.0,
        "end": 2.5,
        "text": "Hello there.",
        "words": [
            {"start": 0.0, "end": 1.0, "word": " Hello", "probability": 0.9},
            {"start": 1.0, "end": 2.5, "word": " there.", "probability": 0.8},
        ],
    }
    assert "words" not in second
    assert "speaker" not in first


CONVERSATION = Transcript(
    "en",
    0.99,
    12.0,
    [
        Segment(1, 0.0, 2.0, " Good morning.", speaker="SPEAKER_00"),
        Segment(2, 2.0, 4.0, " How are you?", speaker="SPEAKER_00"),
        Segment(3, 4.5, 7.0, " Fine, thanks.", speaker="SPEAKER_01"),
        Segment(4, 7.5, 9.0, " Good.", speaker="SPEAKER_00"),
    ],
)


def test_a_diarized_txt_gives_each_turn_under_its_speaker() -> None:
    assert to_txt(CONVERSATION) == (
        "SPEAKER_00\nGood morning.\nHow are you?\n\nSPEAKER_01\nFine, thanks.\n\nSPEAKER_00\nGood.\n"
    )


def test_diarized_subtitles_name_the_speaker_before_each_cue() -> None:
    srt_cues = [cue.split("\n") for cue in to_srt(CONVERSATION).split("\n\n")[:-1]]
    assert [text for _, _, text in srt_cues] == [
        "SPEAKER_00: Good morning.",
        "SPEAKER_00: How are you?",
        "SPEAKER_01: Fine, thanks.",
        "SPEAKER_00: Good.",
    ]
    assert srt_cues[2][1] == "00:00:04,500 --> 00:00:07,000"
    vtt_cues = [cue.split("\n") for cue in to_vtt(CONVERSATION).removeprefix("WEBVTT\n\n").split("\n\n")[:-1]]
    assert vtt_cues[2] == ["00:00:04.500 --> 00:00:07.000", "SPEAKER_01: Fine, thanks."]


def test_diarized_json_and_tsv_give_each_segment_its_speaker() -> None:
    segments = json.loads(to_json(CONVERSATION))["segments"]
    assert [(segment["speaker"], segment["text"]) for segment in segments] == [
        ("SPEAKER_00", "Good morning."),
        ("SPEAKER_00", "How are you?"),
        ("SPEAKER_01", "Fine, thanks."),
        ("SPEAKER_00", "Good."),
    ]
    rows = [line.split("\t") for line in to_tsv(CONVERSATION).splitlines()]
    assert rows[0] == ["start", "end", "speaker", "text"]
    assert rows[3] == ["4500", "7000", "SPEAKER_01", "Fine, thanks."]


def test_every_format_has_a_content_type() -> None:
    assert set(RENDERERS) == {"json", "txt", "srt", "vtt", "tsv"}
    assert RENDERERS["txt"][1] == "text/plain; charset=utf-8"
    assert RENDERERS["srt"][1] == "application/x-subrip"
