"""A job's presigned URLs: exactly its own objects, for as long as its deadline, never more."""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.operator.grants import MAX_MODEL_FILES, model_files, model_grants, store_grants

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)


def presign(method: str, bucket: str, key: str, valid: timedelta) -> str:
    return f"https://store.example/{bucket}/{key}?method={method}&valid={int(valid.total_seconds())}"


def spec(**fields: object) -> TranscriptionJobSpec:
    return TranscriptionJobSpec.model_validate(
        {
            "source": {"s3": {"bucket": "audio", "key": "team-a/talk.flac"}},
            "outputs": {"formats": ["json", "srt"], "s3": {"bucket": "transcripts", "prefix": "team-a/talk/"}},
            **fields,
        }
    )


def test_the_source_is_granted_for_reading_and_each_transcript_for_writing_until_the_deadline() -> None:
    grants = store_grants(spec(activeDeadlineSeconds=600), presign, NOW, grace=GRACE)
    assert grants.source is not None
    assert grants.source.uri == "s3://audio/team-a/talk.flac"
    assert grants.source.url == "https://store.example/audio/team-a/talk.flac?method=GET&valid=1200"
    assert {format_: grant.uri for format_, grant in grants.outputs.items()} == {
        "json": "s3://transcripts/team-a/talk/talk.json",
        "srt": "s3://transcripts/team-a/talk/talk.srt",
    }
    assert all("method=PUT" in grant.url for grant in grants.outputs.values())
    assert grants.expires == "2025-01-01T12:20:00Z"
    assert grants.model == {} and grants.model_error is None


def test_a_url_source_gets_no_read_grant_and_long_deadlines_stop_at_seven_days() -> None:
    grants = store_grants(
        spec(source={"url": "https://example.org/a.mp3"}, activeDeadlineSeconds=30 * 86400), presign, NOW, grace=GRACE
    )
    assert grants.source is None
    assert all(urlsplit(grant.url).query.endswith(f"valid={7 * 86400}") for grant in grants.outputs.values())


def test_an_s3_model_is_granted_file_by_file_within_its_directory() -> None:
    keys = [
        "models/tiny/model.bin",
        "models/tiny/config.json",
        "models/tiny/",
        "models/tiny/../../secret",
        "models/tiny/sub/vocab.txt",
    ]
    grants = store_grants(spec(model="s3://shared/models/tiny"), presign, NOW, grace=GRACE, model_keys=keys)
    assert {path: grant.uri for path, grant in grants.model.items()} == {
        "model.bin": "s3://shared/models/tiny/model.bin",
        "config.json": "s3://shared/models/tiny/config.json",
        "sub/vocab.txt": "s3://shared/models/tiny/sub/vocab.txt",
    }


def test_a_model_prefix_holding_too_much_is_refused_with_the_reason() -> None:
    keys = [f"k{i}" for i in range(MAX_MODEL_FILES + 1)]
    assert model_files("s3://everything", keys) == (
        {},
        f"s3://everything holds more than {MAX_MODEL_FILES} objects: name the directory of one model",
    )
    grants = store_grants(spec(model="s3://everything"), presign, NOW, grace=GRACE, model_keys=keys)
    assert grants.model == {} and grants.model_error is not None
    failed = store_grants(
        spec(model="s3://gone/m/"), presign, NOW, grace=GRACE, model_error="cannot list s3://gone/m/: NoSuchBucket"
    )
    assert failed.model_error == "cannot list s3://gone/m/: NoSuchBucket"


def test_a_pools_model_is_granted_for_its_own_validity() -> None:
    keys = ["models/tiny/model.bin", "models/tiny/config.json"]
    grants = model_grants("s3://shared/models/tiny/", presign, NOW, timedelta(days=1), keys=keys)
    assert {path: grant.uri for path, grant in grants.model.items()} == {
        "model.bin": "s3://shared/models/tiny/model.bin",
        "config.json": "s3://shared/models/tiny/config.json",
    }
    assert all(grant.url.endswith(f"method=GET&valid={86400}") for grant in grants.model.values())
    assert grants.expires == "2025-01-02T12:00:00Z"
    assert (grants.source, grants.outputs, grants.model_error) == (None, {}, None)


def test_a_model_prefix_holding_nothing_is_refused_with_the_reason() -> None:
    grants = model_grants("s3://shared/models/absent/", presign, NOW, timedelta(days=1), keys=[])
    assert (grants.model, grants.model_error) == ({}, "s3://shared/models/absent/ holds no objects")
