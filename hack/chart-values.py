#!/usr/bin/env python3
"""Writes docs/chart-values.md, the reference of the chart's values, from charts/kubescribe/values.schema.json (the
descriptions and types) and values.yaml (the defaults).

hack/chart-values.py            write the reference
hack/chart-values.py --check    exit 1 when the reference differs from what would be written
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kubescribe"
REFERENCE = REPO / "docs" / "chart-values.md"
HEADER = """\
# Chart values

Generated from `charts/kubescribe/values.schema.json` and `values.yaml` by `hack/chart-values.py`; do not edit.
Helm checks every value against the schema: a misspelled or unknown value, or one of the wrong type, fails
`helm install`, `helm upgrade` and `helm template` with the value's path.
"""


def _resolved(node: dict[str, Any], definitions: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The node with its $ref's definition merged under it (the node's own description wins), and the
    definition's name."""
    if "$ref" not in node:
        return node, None
    name = node["$ref"].removeprefix("#/definitions/")
    return {**definitions[name], **{k: v for k, v in node.items() if k != "$ref"}}, name


def _type(node: dict[str, Any], definition: str | None, definitions: dict[str, Any]) -> str:
    if "enum" in node:
        return " or ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    if definition in ("quantity", "seconds", "port", "cidr", "model"):
        return definition
    kinds = node.get("type", "any")
    kind = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if kind == "array":
        item, item_definition = _resolved(node.get("items", {}), definitions)
        return f"list of {item_definition or item.get('type', 'any')}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map"
    return str(kind)


def _rows(
    path: str, node: dict[str, Any], default: Any, definitions: dict[str, Any]
) -> Iterator[tuple[str, str, str, str]]:
    """(path, type, default, description) of each value under `node`: objects with properties are walked into,
    and so are the items of a list of objects defined in place."""
    node, definition = _resolved(node, definitions)
    if "properties" in node:
        defaults = default if isinstance(default, dict) else {}
        for name, child in node["properties"].items():
            yield from _rows(f"{path}.{name}", child, defaults.get(name), definitions)
        return
    shown = "" if default is None else f"`{json.dumps(default)}`"
    yield path, _type(node, definition, definitions), shown, node.get("description", "")
    items = node.get("items", {})
    if node.get("type") == "array" and "properties" in items:
        for name, child in items["properties"].items():
            yield from _rows(f"{path}[].{name}", child, None, definitions)


def reference(schema: dict[str, Any], values: dict[str, Any]) -> str:
    definitions = schema.get("definitions", {})
    sections = [HEADER]
    for name, node in schema["properties"].items():
        resolved, _ = _resolved(node, definitions)
        lines = [f"## {name}", "", resolved.get("description", ""), ""]
        lines += ["| value | type | default | description |", "| --- | --- | --- | --- |"]
        for path, kind, default, description in _rows(name, node, values.get(name), definitions):
            cells = (f"`{path}`", kind, default, description)
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check that the reference is up to date")
    args = parser.parse_args(argv)
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    text = reference(schema, values)
    if args.check:
        if not REFERENCE.is_file() or REFERENCE.read_text() != text:
            print(f"{REFERENCE} is out of date: run hack/chart-values.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
