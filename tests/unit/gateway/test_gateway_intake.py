"""How audio comes in: job names, file names, the resource built, submissions checked before anything is uploaded."""

from __future__ import annotations

import pytest

from kubescribe.api.v1alpha1 import TranscriptionJob
from kubescribe.contract import UPLOADED_SOURCE_ANNOTATION, uploaded_source_key
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake import resource
from kubescribe.gateway.intake.submission import (
    Submission,
    parse_formats,
    s3_source,
    transcription_job_spec,
    waiting_jobs,
)
from kubescribe.gateway.intake.upload import is_multipart


def test_waiting_jobs_count_pending_and_queued_of_one_namespace() -> None:
    found = [
        {"metadata": {"namespace": namespace}, "status": {"phase": phase} if phase else None}
        for namespace, phase in [("a", None), ("a", "Queued"), ("a", "Running"), ("b", "Pending")]
    ]
    assert waiting_jobs(found, "a") == 2


def test_job_ids_and_file_names() -> None:
    assert resource.is_job_id(resource.new_job_id())
    assert not resource.is_job_id("tj-../../etc")
    assert resource.sanitize_filename("../../etc/passwd") == "passwd"
    assert resource.sanitize_filename("C:\\audio\\talk.mp3") == "talk.mp3"
    assert resource.sanitize_filename("a\x00b\nc.wav") == "abc.wav"
    assert resource.sanitize_filename("...") == resource.sanitize_filename(None) == "audio"
    long = resource.sanitize_filename("z" * 500 + ".flac")
    assert len(long) == 200 and long.endswith(".flac")
    assert uploaded_source_key("ns", "tj-abc") == "ns/uploads/tj-abc/audio"


def test_the_resource_built_for_an_upload_is_a_valid_job_the_operator_cleans_up_after() -> None:
    spec = transcription_job_spec(Submission(model="base"), s3_source("audio", uploaded_source_key("ns", "tj-abc")), 1)
    built = resource.build_transcription_job("ns", "tj-abc", spec, "talk.mp3", request_id="req-1", requested_by="alice")
    job = TranscriptionJob.model_validate(built)
    assert job.spec.source.s3 is not None and job.spec.source.s3.key == "ns/uploads/tj-abc/audio"
    assert built["metadata"]["annotations"][UPLOADED_SOURCE_ANNOTATION] == "true"
    assert built["metadata"]["annotations"][resource.REQUESTED_BY_ANNOTATION] == "alice"
    assert built["metadata"]["labels"] == {"kubescribe.io/submitted-by": "gateway"}


def test_submissions_are_checked_before_anything_is_uploaded() -> None:
    assert parse_formats("json, srt,json") == ("json", "srt")
    for bad in ("", "docx", "json,,pdf"):
        with pytest.raises(ApiError):
            parse_formats(bad)
    spec = transcription_job_spec(
        Submission(model="base", language="de", prompt="Names", temperature=0.2), s3_source("audio", "k"), 0
    )
    assert (spec.options.initial_prompt, spec.options.temperature, spec.resources.gpu) == ("Names", 0.2, 0)
    with pytest.raises(ApiError) as error:
        transcription_job_spec(Submission(model="tiny.en", task="translate"), s3_source("audio", "k"), 1)
    assert error.value.status_code == 400


def test_only_multipart_forms_are_uploads() -> None:
    assert is_multipart("multipart/form-data; boundary=x")
    assert is_multipart(" Multipart/Form-Data ")
    for other in (None, "", "application/json", "application/x-www-form-urlencoded", "multipart/mixed; boundary=x"):
        assert not is_multipart(other)
