"""The TranscriptionJob CustomResourceDefinition, generated from the models in kubescribe.api.v1alpha1.

python -m kubescribe.api.crd            write crds/transcriptionjobs.kubescribe.io.yaml and the chart's template
python -m kubescribe.api.crd --check    exit 1 when either differs from what would be written
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kubescribe.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION, TranscriptionJob

_REPO = Path(__file__).resolve().parents[2]
MANIFEST_PATH = _REPO / "crds" / f"{PLURAL}.{GROUP}.yaml"
"""The plain manifest, for `kubectl apply`."""
TEMPLATE_PATH = _REPO / "charts" / "kubescribe" / "templates" / "transcriptionjob-crd.yaml"
"""The chart's template: a CRD in crds/ would never be upgraded by Helm."""
_GENERATED = "Generated from kubescribe/api/v1alpha1.py by `python -m kubescribe.api.crd`; do not edit."
_TEMPLATE_METADATA = """\
  labels:
    app.kubernetes.io/name: kubescribe
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
    helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
  annotations:
    # Uninstalling the release keeps the CRD: deleting it would delete every TranscriptionJob.
    helm.sh/resource-policy: keep
"""

_PRINTER_COLUMNS = [
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


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of TranscriptionJob, as a plain dict."""
    json_schema = TranscriptionJob.model_json_schema(by_alias=True)
    schema = _structural(json_schema, json_schema.pop("$defs"))
    schema["properties"].update(
        apiVersion={"type": "string", "description": "Versioned schema of this object: kubescribe.io/v1alpha1."},
        kind={"type": "string", "description": "Kind of this object: TranscriptionJob."},
        metadata={"type": "object"},
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["tj", "tjob"],
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
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The plain manifest's text."""
    return f"# {_GENERATED}\n" + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def crd_template() -> str:
    """The chart template's text: the CRD with the release's labels, kept on uninstall, unless crds.install is
    false."""
    body = yaml.safe_dump(build_crd(), sort_keys=False, width=120)
    if "{{" in body:
        raise ValueError("the CRD holds `{{`, which Helm would read as a template action")
    name = f"  name: {PLURAL}.{GROUP}\n"
    body = body.replace(name, name + _TEMPLATE_METADATA, 1)
    return f"{{{{- /* {_GENERATED} */}}}}\n{{{{- if .Values.crds.install }}}}\n{body}{{{{- end }}}}\n"


def generated_files() -> dict[Path, str]:
    return {MANIFEST_PATH: crd_yaml(), TEMPLATE_PATH: crd_template()}


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
