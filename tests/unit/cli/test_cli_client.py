"""The CLI's gateway client: server-sent events, and the phases it copies from the API package."""

from __future__ import annotations

import subprocess
import sys

from kubescribe.api import v1alpha1
from kubescribe.cli import client
from kubescribe.cli.client import SseEvent, parse_sse


def test_sse_parser_joins_data_lines_and_skips_comments() -> None:
    stream = [
        ": keep-alive\n",
        "event: status\n",
        'data: {"a":\n',
        "data: 1}\n",
        "\n",
        "retry: 1000\n",
        "data:plain\r\n",
        "\r\n",
        "event: end\n",
        "data: {}\n",
        "\n",
    ]
    assert list(parse_sse(stream)) == [
        SseEvent("status", '{"a":\n1}'),
        SseEvent("message", "plain"),
        SseEvent("end", "{}"),
    ]


def test_sse_parser_drops_an_unfinished_event_and_events_without_data() -> None:
    assert list(parse_sse(["event: status\n", "\n", "event: status\n", "data: x\n"])) == []


def test_the_copied_phases_are_the_apis() -> None:
    assert client.PHASES == v1alpha1.PHASES


def test_the_cli_loads_neither_the_api_package_nor_its_dependencies() -> None:
    script = (
        "import sys, kubescribe.cli.commands\n"
        "heavy = ('kubescribe.api', 'kubescribe.gateway', 'pydantic', 'kubernetes', 'fastapi')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
