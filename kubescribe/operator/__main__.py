"""`kubescribe-operator` (or `python -m kubescribe.operator`): the operator, watching every namespace or those of
KUBESCRIBE_NAMESPACES (a JSON list)."""

from __future__ import annotations

import logging
import sys

import kopf

from kubescribe.logs import JsonFormatter
from kubescribe.operator import handlers  # noqa: F401 (registers the handlers)
from kubescribe.operator.settings import OperatorSettings


def main() -> None:
    settings = OperatorSettings()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter(secrets=[settings.s3_secret_key.get_secret_value()]))
    logging.basicConfig(level=settings.log_level, handlers=[stream], force=True)
    # kopf says "Handler succeeded" for every watch event; its warnings and errors are what matter.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
    )


if __name__ == "__main__":
    main()
