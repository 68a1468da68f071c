"""The storage and model policy: a namespace's jobs use their own prefix, what grants add, and allowed models."""

from typing import Any

import pytest
from pydantic import ValidationError

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.operator.policy import MODEL_FORBIDDEN, STORAGE_FORBIDDEN, StorageGrant, StoragePolicy, refusal

POLICY = StoragePolicy(
    buckets=["audio", "transcripts"],
    grants=[
        StorageGrant(name="shared-models", location="s3://models/whisper/"),
        StorageGrant(name="archive", location="s3://archive/", access="readwrite", namespaces=["team-a", "team-c"]),
    ],
)
MODELS = ["tiny.en", "base", "s3://approved/"]


def spec(
    source: dict[str, Any] | None = None, output: dict[str, Any] | None = None, **fields: Any
) -> TranscriptionJobSpec:
    return TranscriptionJobSpec.model_validate(
        {
            "source": {"s3": source or {"bucket": "audio", "key": "team-a/talk.flac"}},
            "model": "tiny.en",
            "outputs": {"s3": output or {"bucket": "transcripts", "prefix": "team-a/talk/"}},
            **fields,
        }
    )


def test_a_namespace_reads_and_writes_under_its_own_prefix_of_each_bucket() -> None:
    assert refusal(spec(), "team-a", POLICY, MODELS) is None
    assert refusal(spec({"bucket": "transcripts", "key": "team-a/old.wav"}), "team-a", POLICY, MODELS) is None


@pytest.mark.parametrize(
    "key",
    [
        "team-b/uploads/tj-1/audio",  # another tenant's upload
        "team-ab/talk.flac",  # a namespace whose name starts with ours is not ours
        "team-a",  # the prefix itself is not under it
        "team-a/../team-b/talk.flac",
        "team-a/./talk.flac",
        "talk.flac",
    ],
)
def test_reading_outside_the_namespaces_prefix_is_forbidden_and_the_message_names_the_rule(key: str) -> None:
    refused = refusal(spec({"bucket": "audio", "key": key}), "team-a", POLICY, MODELS)
    assert refused is not None
    reason, message = refused
    assert reason == STORAGE_FORBIDDEN
    assert f"namespace team-a may not read s3://audio/{key}" in message
    assert "s3://audio/team-a/, s3://transcripts/team-a/, s3://models/whisper/, s3://archive/" in message
    assert "storage.grants" in message


@pytest.mark.parametrize("prefix", ["team-b/steal/", "", "team-a", "team-a/../team-b/"])
def test_writing_outside_the_namespaces_prefix_is_forbidden(prefix: str) -> None:
    refused = refusal(spec(output={"bucket": "transcripts", "prefix": prefix}), "team-a", POLICY, MODELS)
    assert refused is not None
    assert refused[0] == STORAGE_FORBIDDEN
    assert f"may not write s3://transcripts/{prefix}" in refused[1]


def test_grants_add_locations_to_the_namespaces_they_name_only_and_read_grants_do_not_write() -> None:
    shared = {"bucket": "models", "key": "whisper/sample.wav"}
    team_b_output = {"bucket": "transcripts", "prefix": "team-b/talk/"}
    assert refusal(spec(shared, team_b_output), "team-b", POLICY, MODELS) is None
    assert refusal(spec(shared, {"bucket": "models", "prefix": "whisper/out/"}), "team-b", POLICY, MODELS) is not None
    archive = {"bucket": "archive", "key": "2024/talk.flac"}
    assert refusal(spec(archive, {"bucket": "archive", "prefix": "2024/"}), "team-c", POLICY, MODELS) is None
    assert refusal(spec(archive, team_b_output), "team-b", POLICY, MODELS) is not None


def test_a_store_the_job_names_itself_is_its_own_business() -> None:
    own = {"bucket": "elsewhere", "key": "any/key.wav", "endpoint": "https://s3.example", "secretName": "mine"}
    job = spec(own, {"bucket": "anything", "prefix": ""}, model="s3://elsewhere/model/")
    assert refusal(job, "team-a", POLICY, MODELS) is None


@pytest.mark.parametrize(
    ("model", "allowed"),
    [
        ("tiny.en", True),
        ("large-v3", False),  # a Whisper name, not on this cluster's list
        ("org/any-repo", False),
        ("s3://approved/large/", True),
        ("s3://models/whisper/large/", True),  # readable by every namespace
        ("s3://audio/team-a/my-model/", True),  # the namespace's own
        ("s3://audio/team-b/their-model/", False),
        ("s3://audio", False),  # a whole bucket of every tenant's uploads
        ("s3://approved/../audio/", False),
    ],
)
def test_models_come_from_the_allow_list_or_a_readable_directory(model: str, allowed: bool) -> None:
    refused = refusal(spec(model=model), "team-a", POLICY, MODELS)
    assert (refused is None) == allowed
    if refused is not None:
        assert refused[0] == MODEL_FORBIDDEN
        assert f"{model} is not an allowed model" in refused[1]


@pytest.mark.parametrize("location", ["models/", "s3://models", "s3://", "https://store/models/"])
def test_a_grants_location_is_an_s3_directory(location: str) -> None:
    with pytest.raises(ValidationError, match="s3://bucket/"):
        StorageGrant(name="bad", location=location)
