"""The official OpenAI client against the gateway's /v1/audio API, and the whole API against its OpenAPI document
(schemathesis, every check)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.integration.conformance import conformance_failures
from tests.integration.conftest import Gateway, Kubescribe
from tests.integration.speech import NAME, SENTENCE_WITH_A_NAME, speak, word_error_rate

SENTENCE = "The operator watches every request and reports its progress until the work is done."
MAX_WER = 0.3
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def sentence(speech_dir: Path) -> Path:
    return speak(speech_dir, "sentence", SENTENCE)


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.keys["gw-a"], max_retries=0, timeout=240)


def transcribe(client: openai.OpenAI, audio: Path, **options: Any) -> Any:
    with audio.open("rb") as file:
        return client.audio.transcriptions.create(file=file, **{"model": "whisper-1", **options})


def test_every_response_format(client: openai.OpenAI, sentence: Path, kubescribe: Kubescribe, speech_dir: Path) -> None:
    assert word_error_rate(SENTENCE, transcribe(client, sentence).text) < MAX_WER
    assert word_error_rate(SENTENCE, transcribe(client, sentence, response_format="text")) < MAX_WER

    srt = transcribe(client, sentence, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ")
    vtt = transcribe(client, sentence, response_format="vtt")
    assert vtt.startswith("WEBVTT")

    verbose = transcribe(
        client, sentence, response_format="verbose_json", timestamp_granularities=["word", "segment"], language="en"
    )
    assert verbose.language == "english"  # as OpenAI names it
    assert verbose.duration > 3
    assert word_error_rate(SENTENCE, verbose.text) < MAX_WER
    assert verbose.segments and verbose.segments[0].start >= 0
    assert verbose.words and all(w.start <= w.end for w in verbose.words)
    assert len(verbose.words) >= len(SENTENCE.split()) - 3

    # A prompt spells a made-up name as it does.
    prompted = transcribe(client, speak(speech_dir, "name", SENTENCE_WITH_A_NAME), prompt=f"A note from {NAME}.")
    assert NAME in prompted.text, prompted.text

    left = kubescribe.cluster.get("tj", "-n", "gw-a", "-l", "kubescribe.io/submitted-by=gateway")["items"]
    assert all("deletionTimestamp" in job["metadata"] for job in left)  # each answered job is deleted


def test_models_and_errors_in_openai_shapes(client: openai.OpenAI, gateway: Gateway, sentence: Path) -> None:
    assert {"whisper-1", "tiny.en", "base"} <= {model.id for model in client.models.list()}
    with pytest.raises(openai.BadRequestError) as bad_model:
        transcribe(client, sentence, model="gpt-5-audio")
    assert bad_model.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        transcribe(client, sentence, response_format="docx")
    with sentence.open("rb") as file, pytest.raises(openai.BadRequestError):
        client.audio.translations.create(model="tiny.en", file=file)
    with pytest.raises(openai.AuthenticationError) as denied:
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="ks_wrong", max_retries=0).models.list()
    assert denied.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as status:
        client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"not audio at all" * 10))
    assert status.value.status_code == 415


def test_the_api_conforms_to_its_document(gateway: Gateway) -> None:
    assert conformance_failures(gateway.url, gateway.keys["gw-b"], EXAMPLES_PER_OPERATION) == []
