"""How the runner ends when something expected goes wrong, and where it says why."""

from __future__ import annotations

import os
from pathlib import Path

from kubescribe.contract import ENV_TERMINATION_MESSAGE_PATH, EXIT_BAD_INPUT, TERMINATION_MESSAGE_PATH


class RunnerFailure(Exception):
    """An expected failure: the exit code, a CamelCase reason and a message for the user."""

    def __init__(self, exit_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason
        self.message = message


class Cancelled(BaseException):
    """Raised in the main thread on SIGTERM. A BaseException, so that handlers of ordinary errors let it pass."""


def bad_audio(message: str) -> RunnerFailure:
    return RunnerFailure(EXIT_BAD_INPUT, "BadAudio", message)


def termination_message_path() -> Path:
    return Path(os.environ.get(ENV_TERMINATION_MESSAGE_PATH) or TERMINATION_MESSAGE_PATH)
