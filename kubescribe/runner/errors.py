"""How the runner ends when something expected goes wrong, and where it says why."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from kubescribe.contract import ENV_TERMINATION_MESSAGE_PATH, EXIT_BAD_INPUT, EXIT_FAILED, TERMINATION_MESSAGE_PATH
from kubescribe.logs import redact

MAX_MESSAGE_CHARS = 3000
"""The kubelet keeps 4096 bytes of a termination message."""


class RunnerFailure(Exception):
    """An expected failure: the exit code, a CamelCase reason and a message for the user."""

    def __init__(self, exit_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason
        self.message = message


class Cancelled(BaseException):
    """Raised in the main thread on SIGTERM. A BaseException, so that handlers of ordinary errors let it pass."""


class Abandoned(BaseException):
    """Raised in a pool worker's attempt that is no longer its own (its Lease lost, its assignment deleted): it
    reports and uploads nothing more. A BaseException, so that handlers of ordinary errors let it pass."""


def unexpected_failure(error: Exception) -> RunnerFailure:
    """The failure an unexpected error ends a run with."""
    return RunnerFailure(EXIT_FAILED, "RunnerError", f"{type(error).__name__}: {error}")


def failure_report(failure: RunnerFailure, secrets: Iterable[str]) -> dict[str, str]:
    """What the runner says of `failure`: its reason, and its message with `secrets` masked, cut to what a
    termination message keeps."""
    return {"reason": failure.reason, "message": redact(failure.message, secrets)[:MAX_MESSAGE_CHARS]}


def bad_audio(message: str) -> RunnerFailure:
    return RunnerFailure(EXIT_BAD_INPUT, "BadAudio", message)


def termination_message_path() -> Path:
    return Path(os.environ.get(ENV_TERMINATION_MESSAGE_PATH) or TERMINATION_MESSAGE_PATH)
