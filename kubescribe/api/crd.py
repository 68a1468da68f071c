"""The CustomResourceDefinitions (TranscriptionJob, RunnerPool, RunnerAssignment), generated from the models in
kubescribe.api.v1alpha1 and kubescribe.api.pools.

python -m kubescribe.api.crd            write crds/<plural>.kubescribe.io.yaml and the chart's templates
python -m kubescribe.api.crd --check    exit 1 when any differs from what would be written
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kubescribe.api.pools import (
    ASSIGNMENT_KIND,
    ASSIGNMENT_PLURAL,
    POOL_KIND,
    POOL_PLURAL,
    RunnerAssignment,
    RunnerPool,
)
from kubescribe.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION, TranscriptionJob

_REPO = Path(__file__).resolve().parents[2]
_GENERATED = "Generated from kubescribe/api/ by `python -m kubescribe.api.crd`; do not edit."
_TEMPLATE_METADATA = """\
  labels:
    app.kubernetes.io/name: kubescribe
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
    helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
  annotations:
    # Uninstalling the release keeps the CRD: deleting it would delete every object of its kind.
    helm.sh/resource-policy: keep
"""

_JOB_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Position",
        "type": "integer",
        "jsonPath": ".status.queuePosition",
        "description": "Place in the operator's queue while queued; 1 is admitted next.",
    },
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent", "description": "Percent done."},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {
        "name": "Pool",
        "type": "string",
        "jsonPath": ".status.pool",
        "description": "The RunnerPool that runs the job; empty for a pod of its own.",
    },
    {"name": "Language", "type": "string", "jsonPath": ".status.result.language"},
    {
        "name": "Duration",
        "type": "number",
        "jsonPath": ".status.result.durationSeconds",
        "description": "Length of the audio in seconds.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]


_POOL_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Running", "type": "integer", "jsonPath": ".status.running", "description": "Jobs running."},
    {"name": "Waiting", "type": "integer", "jsonPath": ".status.waiting", "description": "Jobs waiting for room."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Model Error",
        "type": "string",
        "jsonPath": ".status.modelGrants.error",
        "description": "Why the workers could not be given their s3:// model's files the last time it was tried.",
        "priority": 1,
    },
]
_ASSIGNMENT_COLUMNS: list[dict[str, Any]] = [
    {"name": "Pool", "type": "string", "jsonPath": ".spec.pool"},
    {"name": "Job", "type": "string", "jsonPath": ".spec.job.name"},
    {"name": "Attempt", "type": "integer", "jsonPath": ".spec.attempt"},
    {"name": "Worker", "type": "string", "jsonPath": ".status.worker"},
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


@dataclass(frozen=True)
class Resource:
    """A custom resource of the group and where its generated CRD goes."""

    kind: str
    plural: str
    model: type[BaseModel]
    short_names: list[str]
    columns: list[dict[str, Any]]
    template: str
    """The chart template's file name: a CRD in the chart's crds/ would never be upgraded by Helm."""

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def manifest_path(self) -> Path:
        """The plain manifest, for `kubectl apply`."""
        return _REPO / "crds" / f"{self.name}.yaml"

    @property
    def template_path(self) -> Path:
        return _REPO / "charts" / "kubescribe" / "templates" / self.template


RESOURCES = (
    Resource(KIND, PLURAL, TranscriptionJob, ["tj", "tjob"], _JOB_COLUMNS, "transcriptionjob-crd.yaml"),
    Resource(POOL_KIND, POOL_PLURAL, RunnerPool, ["rp"], _POOL_COLUMNS, "runnerpool-crd.yaml"),
    Resource(
        ASSIGNMENT_KIND, ASSIGNMENT_PLURAL, RunnerAssignment, ["ra"], _ASSIGNMENT_COLUMNS, "runnerassignment-crd.yaml"
    ),
)


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema node as a Kubernetes structural schema: references inlined, optional fields
    without their null alternative, free-form maps kept whole, and no titles."""
    node = dict(node)
    if "anyOf" in node:
        variants = [variant for variant in node.pop("anyOf") if variant != {"type": "null"}]
        if len(variants) != 1:
            raise ValueError(f"a structural schema cannot express the union {variants}")
        node = {**variants[0], **node}
        if "default" in node and node["default"] is None:
            del node["default"]
    if "$ref" in node:
        # The field's own keys (its description) win over the referenced model's.
        node = {**defs[node.pop("$ref").removeprefix("#/$defs/")], **node}
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "additionalProperties" and value is False):
            continue
        if key == "additionalProperties" and value is True:
            converted["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "properties":
            converted[key] = {name: _structural(child, defs) for name, child in value.items()}
        elif key in ("items", "additionalProperties"):
            converted[key] = _structural(value, defs)
        else:
            # Copied, so that a model used twice does not come out as a YAML anchor and alias.
            converted[key] = copy.deepcopy(value)
    return converted


def build_crd(resource: Resource = RESOURCES[0]) -> dict[str, Any]:
    """The CustomResourceDefinition of `resource` (TranscriptionJob unless told), as a plain dict."""
    json_schema = resource.model.model_json_schema(by_alias=True)
    schema = _structural(json_schema, json_schema.pop("$defs"))
    schema["properties"].update(
        apiVersion={"type": "string", "description": "Versioned schema of this object: kubescribe.io/v1alpha1."},
        kind={"type": "string", "description": f"Kind of this object: {resource.kind}."},
        metadata={"type": "object"},
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": resource.short_names,
                "categories": ["kubescribe"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": resource.columns,
                }
            ],
        },
    }


def crd_yaml(resource: Resource = RESOURCES[0]) -> str:
    """The plain manifest's text."""
    return f"# {_GENERATED}\n" + yaml.safe_dump(build_crd(resource), sort_keys=False, width=120)


def crd_template(resource: Resource = RESOURCES[0]) -> str:
    """The chart template's text: the CRD with the release's labels, kept on uninstall, unless crds.install is
    false."""
    body = yaml.safe_dump(build_crd(resource), sort_keys=False, width=120)
    if "{{" in body:
        raise ValueError("the CRD holds `{{`, which Helm would read as a template action")
    name = f"  name: {resource.name}\n"
    body = body.replace(name, name + _TEMPLATE_METADATA, 1)
    return f"{{{{- /* {_GENERATED} */}}}}\n{{{{- if .Values.crds.install }}}}\n{body}{{{{- end }}}}\n"


def generated_files() -> dict[Path, str]:
    files = {}
    for resource in RESOURCES:
        files[resource.manifest_path] = crd_yaml(resource)
        files[resource.template_path] = crd_template(resource)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check the CRD files from the pydantic models.")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    files = generated_files()
    if args.check:
        stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
        for path in stale:
            print(f"{path} is out of date: run python -m kubescribe.api.crd", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
