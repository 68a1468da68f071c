"""TranscriptionJob specs full of hostile values (Unicode spaces, control characters, very long values, odd URLs,
label keys and values, model names, out-of-range numbers), applied to the real API server: the CRD's schema and the
pydantic models agree on each, every job the API server takes reaches a phase (one the operator cannot read fails
with InvalidSpec) and can be deleted, and a normal job after them all succeeds."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION, TranscriptionJobSpec
from tests.integration.conftest import Kubescribe, scratch_namespace, wait_for
from tests.integration.speech import speak

EXAMPLES = 150
SENTENCE = "Every job the server takes reaches a phase."
NAMESPACE_MARK = "{namespace}"
"""Stands for the test's namespace in store keys, so that the storage policy lets most of them through."""

UNICODE_SPACES = "\u00a0\u1680\u2000\u2007\u2009\u200b\u202f\u205f\u2028\u3000\ufeff"
CONTROLS = "\x00\x01\x07\x08\t\n\r\x1b\x7f\x85\u200e\u202e"
ODD = UNICODE_SPACES + CONTROLS + " /.:-_@%?#[]\\'\"$é日A"
LONG = ["a" * 63, "a" * 64, "a" * 253, "a" * 254, "a" * 317, "a" * 1025, "a" * 2049, "a." * 150 + "a"]


def _insert(value: str, char: str, at: int) -> str:
    at %= len(value) + 1
    return value[:at] + char + value[at:]


def hostile(*valid: str) -> st.SearchStrategy[str]:
    """A valid value half the time; else the same with an odd character inserted, a short odd string, or a very long
    one."""
    odd = st.one_of(
        st.builds(_insert, st.sampled_from(valid), st.sampled_from(ODD), st.integers(0, 64)),
        st.text(alphabet=st.sampled_from(ODD + "abcz019"), max_size=12),
        st.sampled_from(LONG),
    )
    return st.one_of(st.sampled_from(valid), odd)


INT64 = 2**63 - 1
numbers = st.one_of(
    st.integers(-3, 3), st.sampled_from([20, 21, 1000, 1001, 2**31 - 1, 2**31, INT64, INT64 + 1, -INT64 - 2])
)
urls = hostile(
    "https://example.invalid/a.wav",
    "http://127.0.0.1/a.wav",
    "http://[::1]:9000/a",
    "http://169.254.169.254/latest/meta-data/",
    "https://user:secret@example.invalid/a",
    "ftp://example.invalid/a.wav",
    "HTTPS://EXAMPLE.INVALID/A.WAV",
    "https://example.invalid/%00%0a",
    "http://0x7f000001/",
)
sources = st.one_of(
    st.fixed_dictionaries(
        {
            "s3": st.fixed_dictionaries(
                {"bucket": hostile("audio"), "key": hostile("missing.wav").map(lambda key: f"{NAMESPACE_MARK}/{key}")},
                optional={"endpoint": urls, "secretName": hostile("store")},
            )
        }
    ),
    st.fixed_dictionaries({"url": urls}),
)
tolerations = st.fixed_dictionaries(
    {},
    optional={
        "key": hostile("example.com/gpu", "dedicated", ""),
        "operator": st.sampled_from(["Exists", "Equal", "exists", ""]),
        "value": hostile("true", ""),
        "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute", "noexecute", ""]),
        "tolerationSeconds": numbers,
    },
)
resources = st.fixed_dictionaries(
    {"gpu": st.sampled_from([0, 0, 0, -1, 9])},
    optional={
        "cpu": hostile("500m", "2", "1.5"),
        "memory": hostile("4Gi", "100M"),
        "nodeSelector": st.dictionaries(hostile("example.com/pool", "pool"), hostile("a", "gpu-1", ""), max_size=3),
        "tolerations": st.lists(tolerations, max_size=3),
        "priorityClassName": hostile("high"),
    },
)
specs = st.fixed_dictionaries(
    {"source": sources, "resources": resources},
    optional={
        "model": hostile("tiny.en", "base", "org/name", "s3://models/whisper/"),
        "language": hostile("en", "yue"),
        "task": st.sampled_from(["transcribe", "translate", "Translate"]),
        "outputs": st.fixed_dictionaries(
            {"formats": st.lists(st.sampled_from(["json", "txt", "srt", "vtt", "tsv", "JSON", "json\u00a0"]))},
            optional={
                "s3": st.fixed_dictionaries(
                    {"bucket": hostile("transcripts"), "prefix": hostile("out/").map(lambda p: f"{NAMESPACE_MARK}/{p}")}
                )
            },
        ),
        "options": st.fixed_dictionaries(
            {},
            optional={
                "beamSize": numbers,
                "initialPrompt": hostile("Kubescribe", "a" * 2000),
                "hotwords": hostile("Quillfeather", "a" * 2000),
                "temperature": st.sampled_from([0, 0.5, 1, 1.0001, -0.1]),
                "diarize": st.booleans(),
                "minSpeakers": numbers,
                "maxSpeakers": numbers,
            },
        ),
        "priority": numbers,
        "backoffLimit": numbers,
        "activeDeadlineSeconds": numbers,
        "ttlSecondsAfterFinished": numbers,
        "webhookUrl": urls,
    },
)


def pydantic_refusal(spec: dict[str, Any]) -> str | None:
    try:
        TranscriptionJobSpec.model_validate(spec)
    except ValidationError as error:
        return str(error)
    return None


NODE_SELECTOR_KEY = "nodeSelector key"
"""The one rule of pydantic's that the CRD leaves to the operator (a label key of a map), documented in the model."""


@pytest.fixture(scope="module")
def custom(kubescribe: Kubescribe) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(kubescribe.cluster.local.admin_kubeconfig)))


@pytest.fixture(scope="module")
def hostile_namespace(kubescribe: Kubescribe) -> Iterator[str]:
    with scratch_namespace(kubescribe.cluster, "h") as name:
        yield name


def test_hostile_specs_get_a_phase_and_stop_no_other_job(
    kubescribe: Kubescribe, custom: client.CustomObjectsApi, hostile_namespace: str, speech_dir: Path
) -> None:
    namespace = hostile_namespace
    numbering = itertools.count()
    taken: dict[str, str | None] = {}
    """The jobs the API server took, each with pydantic's refusal of its stored spec (None: the operator reads it)."""

    @given(spec=specs)
    @example(spec={"source": {"url": "https://example.invalid/a.wav"}, "resources": {"gpu": 0}})
    # Transcripts named after audio with control characters, which S3's XML cannot carry: never deleted, once.
    @example(spec={"source": {"url": "https://example.invalid/%00%0a"}, "resources": {"gpu": 0}})
    # A host Python's URL parser refuses, though the CRD's pattern takes it: the job fails, the others go on.
    @example(spec={"source": {"url": "https://[/a.wav"}, "resources": {"gpu": 0}})
    @example(
        spec={
            "source": {"s3": {"bucket": "audio", "key": f"{NAMESPACE_MARK}/a\x00.wav"}},
            "outputs": {"s3": {"bucket": "transcripts", "prefix": f"{NAMESPACE_MARK}/\x00/"}},
            "resources": {"gpu": 0},
        }
    )
    # Refused by the CRD's rule alone, once: an endpoint without the Secret for it (and the other way round).
    @example(spec={"source": {"s3": {"bucket": "audio", "key": "a.wav", "endpoint": "https://s3.example"}}})
    @example(spec={"source": {"s3": {"bucket": "audio", "key": "a.wav", "secretName": "store"}}})
    # Refused by the API server alone, once: a bound beyond what its schema's numbers hold (an int64 maximum).
    @example(
        spec={
            "source": {"url": "https://example.invalid/a.wav"},
            "resources": {
                "gpu": 0,
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}],
            },
        }
    )
    # Taken by pydantic alone, once: numbers beyond the API server's integers, or the operator's durations.
    @example(spec={"source": {"url": "https://example.invalid/a.wav"}, "activeDeadlineSeconds": 2**63})
    @example(spec={"source": {"url": "https://example.invalid/a.wav"}, "ttlSecondsAfterFinished": 10**12})
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def the_schema_and_the_models_agree(spec: dict[str, Any]) -> None:
        spec = json.loads(json.dumps(spec).replace(NAMESPACE_MARK, namespace))
        name = f"h-{next(numbering)}"
        job = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TranscriptionJob", "metadata": {"name": name}, "spec": spec}
        try:
            stored = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
        except ApiException as error:
            refusal = pydantic_refusal(spec)
            if error.status == 422:  # the CRD's schema and rules
                assert refusal is not None, f"the API server refuses a spec pydantic takes: {error.body}"
            else:  # a policy after the schema: the storage policy, say
                assert error.status == 403, error.body
                assert refusal is None or NODE_SELECTOR_KEY in refusal, refusal
            return
        refusal = pydantic_refusal(stored["spec"])
        assert refusal is None or NODE_SELECTOR_KEY in refusal, (
            f"the API server takes a spec pydantic refuses: {refusal}"
        )
        taken[name] = refusal

    the_schema_and_the_models_agree()
    assert taken, "the API server took none of the specs"

    def jobs() -> dict[str, dict[str, Any]]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return {item["metadata"]["name"]: item.get("status") or {} for item in items}

    def settled(name: str, status: dict[str, Any]) -> bool:
        """Whether a taken job has its phase, and one the operator cannot read has failed with InvalidSpec."""
        if taken[name] is None:
            return bool(status.get("phase"))
        return (status.get("phase"), status.get("reason")) == ("Failed", "InvalidSpec")

    def unsettled() -> dict[str, dict[str, Any]]:
        statuses = jobs()
        return {name: statuses[name] for name in taken if not settled(name, statuses[name])}

    try:
        wait_for(lambda: not unsettled(), 180, f"each of {len(taken)} jobs to reach its phase")
    except AssertionError as error:
        raise AssertionError(f"{error}; the jobs still unsettled: {unsettled()}") from None
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    wait_for(lambda: not jobs(), 180, "every job to be deleted")

    kubescribe.submit_audio(namespace, "after", speak(speech_dir, "after", SENTENCE), outputs={"formats": ["txt"]})
    after = kubescribe.wait_finished(namespace, "after")["status"]
    assert after["phase"] == "Succeeded", after.get("message")
    assert kubescribe.read(after["result"]["outputs"]["txt"]).strip()
