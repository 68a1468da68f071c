"""The gateway against its own OpenAPI document: schemathesis with every check, in every phase (the document's
examples, boundary and negative coverage, fuzzing, and stateful sequences along the document's links).

`conformance_failures` is the whole run. The integration test calls it with a few examples per operation; a fault
report calls it with many more, against a running gateway:

    source .local/env
    KUBESCRIBE_API_KEY=$(cat .local/dev-api-key) python -m tests.integration.conformance --examples 1000
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import schemathesis
from schemathesis.engine import from_schema
from schemathesis.engine.events import ScenarioFinished
from schemathesis.engine.recorder import ScenarioRecorder

UPLOADS = ["/v1/jobs", "/v1/batches", "/v1/audio/transcriptions", "/v1/audio/translations"]
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
"""What schemathesis takes as accepting a schema-valid request (its own default, less nothing)."""
UNSTATED_RULES = ["413", "415"]
"""What a schema-valid upload may still be answered: its files must decode as audio (415) and fit the upload limit
(413), rules of the files' content that a schema cannot state and the operations' descriptions do."""


def conformance_failures(gateway_url: str, token: str, examples: int, *, seed: int | None = None) -> list[str]:
    """Every failure of every check, one entry each (operation, check, status, what failed and the request as a curl
    command, its credentials filtered), of a run with at most `examples` generated cases per operation and phase;
    empty when the gateway conforms to its document."""
    config = schemathesis.Config.from_dict(
        {
            "base-url": gateway_url,
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {"max-examples": examples, "database": "none"},
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-path": UPLOADS,
                    "include-method": "POST",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *UNSTATED_RULES]}},
                }
            ],
            **({"seed": seed} if seed is not None else {}),
        }
    )
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json", config=config)
    failures: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, ScenarioFinished):
            failures += scenario_failures(event.recorder)
    return sorted(set(failures))


def scenario_failures(recorder: ScenarioRecorder) -> list[str]:
    found = []
    for case_id, checks in recorder.checks.items():
        response = recorder.find_response(case_id=case_id)
        status = response.status_code if response is not None else "no response"
        for check in checks:
            if check.failure_info is not None:
                failure, request = check.failure_info.failure, check.failure_info.code_sample
                what = f"{check.name} ({status}): {failure.title}: {failure.message}"
                found.append(f"{recorder.label}: {what}\n{request}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run schemathesis with every check against a running gateway; the key is KUBESCRIBE_API_KEY."
    )
    parser.add_argument("--gateway", default=os.environ.get("KUBESCRIBE_GATEWAY_URL"), help="the gateway's URL")
    parser.add_argument("--examples", type=int, default=1000, help="generated cases per operation and phase")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if not args.gateway or not os.environ.get("KUBESCRIBE_API_KEY"):
        parser.error("set --gateway (or KUBESCRIBE_GATEWAY_URL) and KUBESCRIBE_API_KEY")
    failures = conformance_failures(args.gateway, os.environ["KUBESCRIBE_API_KEY"], args.examples, seed=args.seed)
    for failure in failures:
        print(failure, end="\n\n")
    print(f"{len(failures)} failures with {args.examples} examples per operation", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
