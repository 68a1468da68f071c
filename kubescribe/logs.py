"""Logging as JSON lines: time, level, logger, message, and the record's extra fields."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

_STANDARD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets` masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with `fields` added to each and the values of `secrets` masked."""

    def __init__(self, fields: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._fields = dict(fields or {})
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self._secrets),
            **self._fields,
            **{key: value for key, value in vars(record).items() if key not in _STANDARD_FIELDS and _plain(value)},
        }
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info), self._secrets)
        return json.dumps(entry, default=str)


def _plain(value: object) -> bool:
    """Whether an extra field is data worth a log line (a library's settings objects are not)."""
    if isinstance(value, dict):
        return all(_plain(item) for item in value.values())
    return value is None or isinstance(value, str | int | float | bool)
