from pathlib import Path

import pydantic
import pytest
import yaml

from kubescribe.api import TranscriptionJob, TranscriptionJobSpec, TranscriptionJobStatus
from kubescribe.api import crd as crd_module
from kubescribe.api.crd import build_crd

SAMPLE = yaml.safe_load((Path(__file__).resolve().parents[3] / "examples/transcriptionjob.yaml").read_text())

URL_SOURCE = {"url": "https://example.org/talk.mp3"}

# The keywords of apiextensions.k8s.io/v1 JSONSchemaProps this schema may use.
KUBERNETES_KEYWORDS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "maxProperties",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
}


def openapi_schema() -> dict:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def schema_nodes(node: dict, path: str = ""):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


def at(path: str) -> dict:
    node = openapi_schema()
    for name in path.split("."):
        node = node["properties"][name]
    return node


def spec_with(**changes) -> dict:
    return {**SAMPLE["spec"], **changes}


def test_the_sample_parses_into_snake_case_fields():
    job = TranscriptionJob.model_validate(SAMPLE)
    assert job.metadata == {"name": "jfk", "namespace": "default"}
    assert job.spec.source.s3 is not None
    assert job.spec.source.s3.key == "default/speeches/jfk.flac"
    assert job.spec.source.url is None
    assert job.spec.outputs.s3 is not None
    assert job.spec.outputs.s3.prefix == "default/jfk/"
    assert job.spec.options.beam_size == 5
    assert job.status is None
    dumped = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["spec"]["options"]["wordTimestamps"] is False
    assert dumped["spec"]["ttlSecondsAfterFinished"] == 7200


def test_python_names_are_accepted_too():
    spec = TranscriptionJobSpec.model_validate({"source": URL_SOURCE, "backoff_limit": 4, "webhook_url": "http://h/x"})
    assert spec.backoff_limit == 4
    assert spec.webhook_url == "http://h/x"


def test_defaults_fill_an_almost_empty_spec():
    spec = TranscriptionJobSpec.model_validate({"source": URL_SOURCE})
    assert spec.model == "tiny.en"
    assert spec.language is None
    assert spec.task == "transcribe"
    assert spec.outputs.formats == ["json", "txt", "srt", "vtt"]
    assert spec.outputs.s3 is None
    assert (spec.options.vad, spec.options.word_timestamps, spec.options.beam_size) == (True, False, 5)
    assert spec.options.temperature == 0
    assert spec.resources.gpu == 1
    assert spec.resources.node_selector == {}
    assert spec.resources.tolerations == []
    assert (spec.priority, spec.backoff_limit) == (0, 2)
    assert (spec.active_deadline_seconds, spec.ttl_seconds_after_finished) == (3600, 7200)
    output_s3 = TranscriptionJobSpec.model_validate({"source": URL_SOURCE, "outputs": {"s3": {"bucket": "out"}}})
    assert output_s3.outputs.s3 is not None
    assert output_s3.outputs.s3.prefix == ""


def test_defaults_are_not_shared_between_instances():
    first = TranscriptionJobSpec.model_validate({"source": URL_SOURCE})
    first.outputs.formats.append("tsv")
    assert TranscriptionJobSpec.model_validate({"source": URL_SOURCE}).outputs.formats == ["json", "txt", "srt", "vtt"]


@pytest.mark.parametrize(
    "model",
    ["tiny", "large-v3", "large-v3-turbo", "distil-large-v3.5", "s3://models/whisper-small/", "Systran/faster-whisper"],
)
def test_model_names_models_in_s3_and_hugging_face_repositories_are_accepted(model):
    assert TranscriptionJobSpec.model_validate(spec_with(model=model)).model == model


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            spec_with(source={"s3": {"bucket": "audio", "key": "a.wav"}, "url": "https://x.org/a.mp3"}),
            "exactly one of source.s3 and source.url must be set",
        ),
        (spec_with(source={}), "exactly one of source.s3 and source.url must be set"),
        (spec_with(source={"url": "ftp://x.org/a.mp3"}), "should match pattern"),
        (spec_with(source={"url": "https://x.org/a\x01.mp3"}), "should match pattern"),
        (spec_with(source={"url": "https://x.org/tä.mp3"}), "should match pattern"),
        (spec_with(source={"s3": {"bucket": "Audio_Files", "key": "a.wav"}}), "should match pattern"),
        (spec_with(source={"s3": {"bucket": "audio", "key": ""}}), "at least 1 character"),
        (spec_with(outputs={"formats": ["json", "docx"]}), "Input should be 'json', 'txt', 'srt', 'vtt' or 'tsv'"),
        (spec_with(outputs={"formats": []}), "at least 1 item"),
        (spec_with(outputs={"formats": ["txt", "txt"]}), "formats must not repeat"),
        (spec_with(ttlSecondsAfterFinished=-1), "greater than or equal to 0"),
        (spec_with(options={"beamSize": 0}), "greater than or equal to 1"),
        (spec_with(options={"temperature": 1.5}), "less than or equal to 1"),
        (spec_with(options={"diarize": True, "minSpeakers": 0}), "greater than or equal to 1"),
        (spec_with(options={"diarize": True, "maxSpeakers": 21}), "less than or equal to 20"),
        (
            spec_with(options={"diarize": True, "minSpeakers": 3, "maxSpeakers": 2}),
            "options.minSpeakers must not exceed options.maxSpeakers",
        ),
        (spec_with(options={"maxSpeakers": 2}), "options.minSpeakers and options.maxSpeakers need options.diarize"),
        (spec_with(options={"hotwords": "Quillfeather " * 200}), "at most 2000 characters"),
        (spec_with(model="tiny.eng"), "should match pattern"),
        (spec_with(language="English"), "should match pattern"),
        (spec_with(task="summarize"), "Input should be 'transcribe' or 'translate'"),
        (spec_with(task="translate"), "translate needs a multilingual model; *.en models only transcribe English"),
        (spec_with(resources={"gpu": 9}), "less than or equal to 8"),
        (spec_with(resources={"memory": "lots"}), "should match pattern"),
        (spec_with(resources={"nodeSelector": {"gpu pool": "a"}}), "is not a label key"),
        (spec_with(resources={"nodeSelector": {"example.com/": "a"}}), "is not a label key"),
        (spec_with(resources={"nodeSelector": {"pool": "a b"}}), "should match pattern"),
        (spec_with(resources={"tolerations": [{"key": "pool", "operator": "Exists", "value": "a"}]}), "takes no value"),
        (spec_with(resources={"tolerations": [{"value": "a"}]}), "without a key must have operator Exists"),
        (spec_with(resources={"tolerations": [{"key": "pool", "tolerationSeconds": 5}]}), "needs effect NoExecute"),
        (spec_with(resources={"tolerations": [{"key": "bad key", "operator": "Exists"}]}), "should match pattern"),
        (spec_with(priority=1001), "less than or equal to 1000"),
        (spec_with(webhookUrl="mailto:ops@example.org"), "should match pattern"),
        (spec_with(beamsize=3), "Extra inputs are not permitted"),
        (
            spec_with(source={"s3": {"bucket": "audio", "key": "a.wav", "endpoint": "https://s3.example"}}),
            "go together",
        ),
        (spec_with(source={"s3": {"bucket": "audio", "key": "a.wav", "secretName": "mine"}}), "go together"),
        (spec_with(activeDeadlineSeconds=2**63), "less than or equal to 2147483647"),
        (spec_with(ttlSecondsAfterFinished=10**12), "less than or equal to 2147483647"),
        (
            spec_with(resources={"tolerations": [{"key": "a", "effect": "NoExecute", "tolerationSeconds": 2**63}]}),
            "less than or equal to 2147483647",
        ),
    ],
)
def test_invalid_specs_are_rejected_with_a_clear_message(spec, message):
    with pytest.raises(pydantic.ValidationError) as error:
        TranscriptionJobSpec.model_validate(spec)
    assert message in str(error.value)


def test_translate_works_with_a_multilingual_model():
    assert TranscriptionJobSpec.model_validate(spec_with(task="translate", model="small")).task == "translate"


def test_status_parses_as_the_operator_writes_it():
    status = TranscriptionJobStatus.model_validate(
        {
            "phase": "Succeeded",
            "conditions": [
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "Transcribed",
                    "message": "",
                    "lastTransitionTime": "2024-05-01T10:00:00Z",
                }
            ],
            "progress": {"percent": 100, "processedSeconds": 11.0, "durationSeconds": 11.0, "etaSeconds": 0},
            "result": {"language": "en", "outputs": {"srt": "s3://transcripts/jfk/jfk.srt"}, "realTimeFactor": 0.05},
            "attempts": 1,
        }
    )
    assert status.conditions[0].last_transition_time.year == 2024
    assert status.result is not None
    assert status.result.outputs == {"srt": "s3://transcripts/jfk/jfk.srt"}
    dumped = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["conditions"][0]["lastTransitionTime"] == "2024-05-01T10:00:00Z"
    with pytest.raises(pydantic.ValidationError, match="Input should be 'Pending'"):
        TranscriptionJobStatus.model_validate({"phase": "Done"})
    with pytest.raises(pydantic.ValidationError, match="less than or equal to 100"):
        TranscriptionJobStatus.model_validate({"progress": {"percent": 101}})


def test_the_crd_files_are_generated_from_the_models():
    for resource in crd_module.RESOURCES:
        assert yaml.safe_load(resource.manifest_path.read_text()) == build_crd(resource)
    assert crd_module.main(["--check"]) == 0


def test_check_fails_on_a_stale_file_and_passes_once_written(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(crd_module, "_REPO", tmp_path)
    jobs = crd_module.RESOURCES[0]
    jobs.manifest_path.parent.mkdir()
    jobs.manifest_path.write_text("stale\n")
    assert crd_module.main(["--check"]) == 1
    assert str(jobs.manifest_path) in capsys.readouterr().err
    assert crd_module.main([]) == 0
    assert crd_module.main(["--check"]) == 0
    assert jobs.manifest_path.read_text() == crd_module.crd_yaml()
    assert jobs.template_path.read_text() == crd_module.crd_template()


def test_the_crd_names_scope_subresource_and_version():
    crd = build_crd()
    assert crd["metadata"]["name"] == "transcriptionjobs.kubescribe.io"
    spec = crd["spec"]
    assert spec["group"] == "kubescribe.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "TranscriptionJob"
    assert spec["names"]["plural"] == "transcriptionjobs"
    assert spec["names"]["shortNames"] == ["tj", "tjob"]
    assert spec["names"]["categories"] == ["kubescribe"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Progress"]["jsonPath"] == ".status.progress.percent"
    assert columns["Model"]["jsonPath"] == ".spec.model"
    assert columns["Language"]["jsonPath"] == ".status.result.language"
    assert (columns["Duration"]["jsonPath"], columns["Duration"]["type"]) == (
        ".status.result.durationSeconds",
        "number",
    )
    assert (columns["Age"]["jsonPath"], columns["Age"]["type"]) == (".metadata.creationTimestamp", "date")
    assert (columns["Message"]["jsonPath"], columns["Message"]["priority"]) == (".status.message", 1)


def test_the_schema_is_structural():
    schema = openapi_schema()
    for path, node in schema_nodes(schema):
        assert "type" in node, f"{path or 'root'} has no type"
        assert node["type"] != "null", path
        assert set(node) <= KUBERNETES_KEYWORDS, f"{path}: {set(node) - KUBERNETES_KEYWORDS}"
        if "properties" in node:
            assert set(node.get("required", [])) <= set(node["properties"]), path
            assert "additionalProperties" not in node, path
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]


def test_every_bound_is_a_number_the_api_server_holds_exactly():
    # It reads a schema's bounds as float64: 2**63 - 1 becomes 2**63, which overflows to -2**63 and refuses all.
    bounds = [
        (path, node[key])
        for path, node in schema_nodes(openapi_schema())
        for key in ("minimum", "maximum")
        if key in node
    ]
    assert bounds
    assert [(path, bound) for path, bound in bounds if abs(bound) > 2**53] == []


def test_every_field_has_a_description():
    schema = openapi_schema()
    fields = [(path, node) for path, node in schema_nodes(schema) if path and not path.endswith(("[]", "{}"))]
    assert len(fields) > 60
    assert [path for path, node in fields if not node.get("description")] == [".metadata"]


def test_the_schema_keeps_defaults_bounds_enums_and_patterns():
    assert at("spec.model")["default"] == "tiny.en"
    assert "pattern" in at("spec.model")
    assert (at("spec.task")["default"], at("spec.task")["enum"]) == ("transcribe", ["transcribe", "translate"])
    formats = at("spec.outputs.formats")
    assert formats["default"] == ["json", "txt", "srt", "vtt"]
    assert formats["minItems"] == 1
    assert formats["x-kubernetes-list-type"] == "set"
    assert formats["items"]["enum"] == ["json", "txt", "srt", "vtt", "tsv"]
    for nested in ("outputs", "options", "resources"):
        assert at(f"spec.{nested}")["default"] == {}, nested
    assert at("spec.outputs.s3")["required"] == ["bucket"]
    assert at("spec.outputs.s3.prefix")["default"] == ""
    beam = at("spec.options.beamSize")
    assert (beam["minimum"], beam["maximum"], beam["default"]) == (1, 20, 5)
    assert at("spec.options.initialPrompt")["maxLength"] == 2000
    assert at("spec.options.hotwords")["maxLength"] == 2000
    assert (at("spec.resources.gpu")["default"], at("spec.resources.gpu")["maximum"]) == (1, 8)
    selector = at("spec.resources.nodeSelector")
    assert (selector["additionalProperties"]["maxLength"], selector["maxProperties"]) == (63, 32)
    assert at("spec.resources.tolerations")["maxItems"] == 16
    assert at("spec.resources.tolerations")["items"]["properties"]["effect"]["enum"] == [
        "NoSchedule",
        "PreferNoSchedule",
        "NoExecute",
    ]
    assert (at("spec.priority")["minimum"], at("spec.priority")["maximum"]) == (-1000, 1000)
    assert at("spec.ttlSecondsAfterFinished")["minimum"] == 0
    assert at("spec.activeDeadlineSeconds")["minimum"] == 1
    assert "default" not in at("spec.language")
    assert at("spec")["required"] == ["source"]
    assert at("status.phase")["enum"] == ["Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"]
    conditions = at("status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert conditions["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert "type" in conditions["items"]["required"]
    assert at("status.startTime")["format"] == "date-time"
    assert at("status.result.outputs")["additionalProperties"] == {"type": "string"}


def test_the_cel_rules_are_on_the_right_objects():
    source_rules = at("spec.source")["x-kubernetes-validations"]
    assert source_rules == [
        {"rule": "has(self.s3) != has(self.url)", "message": "exactly one of source.s3 and source.url must be set"}
    ]
    spec_rules = {rule["rule"]: rule["message"] for rule in at("spec")["x-kubernetes-validations"]}
    assert spec_rules["self == oldSelf"] == "spec is immutable; delete and re-create the job"
    assert (
        spec_rules["self.task != 'translate' || !self.model.endsWith('.en')"]
        == "translate needs a multilingual model; *.en models only transcribe English"
    )
    option_rules = {rule["message"] for rule in at("spec.options")["x-kubernetes-validations"]}
    assert option_rules == {
        "options.minSpeakers must not exceed options.maxSpeakers",
        "options.minSpeakers and options.maxSpeakers need options.diarize: true",
    }


@pytest.mark.parametrize(
    ("source", "stem"),
    [
        ({"s3": {"bucket": "audio", "key": "team-a/talks/jfk.flac"}}, "jfk"),
        ({"url": "https://media.example/r%C3%A9sum%C3%A9%20one.mp3?x=1"}, "résumé one"),
        ({"url": "https://media.example/%00%0a"}, "audio"),
        ({"url": "https://media.example/a%00b%E2%80%AEc.wav"}, "abc"),
        ({"s3": {"bucket": "audio", "key": "team-a/\x07\x1b.wav"}}, "audio"),
        # Hosts Python's URL parser refuses, which the CRD's pattern lets through.
        ({"url": "https://[/talk.wav"}, "talk"),
        ({"url": "http://a]b?c/d.wav"}, "audio"),
        ({"url": "https://u@h:8/x/y.ogg#/z.wav"}, "y"),
    ],
)
def test_transcripts_are_named_after_the_audio_without_control_characters(source, stem):
    assert TranscriptionJobSpec.model_validate({"source": source}).source.stem == stem
