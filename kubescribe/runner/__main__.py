"""`python -m kubescribe.runner`: run one transcription as configured by the environment, and end with the
contract's exit code and termination message."""

from __future__ import annotations

import signal
import sys

# The runner is its container's PID 1, which ignores SIGTERM until it handles it: until main() takes over, SIGTERM
# ends it at once, as it would end any other process, rather than while the imports below load.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

import json
import logging
import os
import shutil
from pathlib import Path
from types import FrameType
from typing import Any

from kubescribe.contract import ENV_JOB_NAME, EXIT_CANCELLED, EXIT_OK
from kubescribe.logs import JsonFormatter
from kubescribe.runner.config import Config
from kubescribe.runner.errors import (
    Cancelled,
    RunnerFailure,
    failure_report,
    termination_message_path,
    unexpected_failure,
)
from kubescribe.runner.pipeline import run
from kubescribe.runner.report import Patch, status_patch

log = logging.getLogger("kubescribe.runner")

WORK_DIRECTORY = "kubescribe-work"


def _cancel(signum: int, frame: FrameType | None) -> None:
    raise Cancelled


def _reporting(config: Config) -> Patch | None:
    if not (config.job_name and config.job_namespace):
        log.info("no job to report to; progress is not reported")
        return None
    try:
        return status_patch(config.job_name, config.job_namespace)
    except Exception:
        log.warning("cannot reach the Kubernetes API; progress is not reported", exc_info=True)
        return None


def main() -> int:
    secrets = [os.environ.get("AWS_SECRET_ACCESS_KEY", ""), os.environ.get("AWS_ACCESS_KEY_ID", "")]
    handler = logging.StreamHandler()
    job = os.environ.get(ENV_JOB_NAME)
    handler.setFormatter(JsonFormatter({"job": job} if job else None, secrets))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    signal.signal(signal.SIGTERM, _cancel)

    workdir = Path.cwd() / WORK_DIRECTORY
    try:
        workdir.mkdir(exist_ok=True)
        config = Config.from_env(os.environ)
        result = run(config, workdir, _reporting(config))
        log.info("done", extra={"outputs": result.outputs})
        _terminate_with({"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)})
        return EXIT_OK
    except RunnerFailure as error:
        failure = error
    except Cancelled:
        failure = RunnerFailure(EXIT_CANCELLED, "Cancelled", "the runner was stopped (SIGTERM)")
    except Exception as error:
        log.exception("the runner failed")
        failure = unexpected_failure(error)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = failure_report(failure, secrets)
    log.error(report["message"], extra={"reason": failure.reason, "exitCode": failure.exit_code})
    _terminate_with(report)
    return failure.exit_code


def _terminate_with(report: dict[str, Any]) -> None:
    path = termination_message_path()
    try:
        path.write_text(json.dumps(report))
    except OSError:
        log.warning("cannot write the termination message", extra={"path": str(path)})


if __name__ == "__main__":
    sys.exit(main())
