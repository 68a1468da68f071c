"""The runner's configuration, read from the environment the operator gives its pod."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.contract import (
    ENV_EGRESS_RULES,
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_LIMITS,
    ENV_MODEL_CACHE,
    ENV_NODE_MODEL_CACHE,
    ENV_SPEC,
    ENV_STORE_GRANTS,
    EXIT_BAD_INPUT,
    EgressRules,
    RunnerLimits,
    StoreGrants,
)
from kubescribe.runner.errors import RunnerFailure

DEFAULT_MODEL_CACHE = "~/.cache/kubescribe/models"


@dataclass(frozen=True)
class S3Settings:
    endpoint: str | None
    access_key: str | None
    secret_key: str | None = field(repr=False)

    def with_endpoint(self, endpoint: str | None) -> S3Settings:
        return S3Settings(endpoint or self.endpoint, self.access_key, self.secret_key)


@dataclass(frozen=True)
class Config:
    spec: TranscriptionJobSpec
    job_name: str | None
    job_namespace: str | None
    s3: S3Settings
    model_cache: Path
    node_model_cache: str | None = None
    """The URL of the node's model cache, which serves an s3:// model's files once the store has allowed them."""
    grants: StoreGrants | None = field(default=None, repr=False)
    """Presigned URLs for the job's objects in the operator's store; None when the job names its own store."""
    egress: EgressRules = field(default_factory=EgressRules)
    """Where the source URL may lead."""
    limits: RunnerLimits = field(default_factory=RunnerLimits)
    """The most the source may cost: bytes, seconds of audio, download time."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        raw = env.get(ENV_SPEC)
        if not raw:
            raise RunnerFailure(EXIT_BAD_INPUT, "InvalidSpec", f"{ENV_SPEC} is not set")
        try:
            spec = TranscriptionJobSpec.model_validate_json(raw)
        except ValidationError as error:
            raise RunnerFailure(EXIT_BAD_INPUT, "InvalidSpec", f"{ENV_SPEC} is not a valid spec: {error}") from None
        grants = env.get(ENV_STORE_GRANTS)
        try:
            store_grants = StoreGrants.model_validate_json(grants) if grants else None
        except ValidationError:
            raise RunnerFailure(EXIT_BAD_INPUT, "InvalidSpec", f"{ENV_STORE_GRANTS} is not valid") from None
        egress = env.get(ENV_EGRESS_RULES)
        try:
            egress_rules = EgressRules.model_validate_json(egress) if egress else EgressRules()
        except ValidationError:
            raise RunnerFailure(EXIT_BAD_INPUT, "InvalidSpec", f"{ENV_EGRESS_RULES} is not valid") from None
        limits = env.get(ENV_LIMITS)
        try:
            runner_limits = RunnerLimits.model_validate_json(limits) if limits else RunnerLimits()
        except ValidationError:
            raise RunnerFailure(EXIT_BAD_INPUT, "InvalidSpec", f"{ENV_LIMITS} is not valid") from None
        return cls(
            spec=spec,
            job_name=env.get(ENV_JOB_NAME) or None,
            job_namespace=env.get(ENV_JOB_NAMESPACE) or None,
            s3=S3Settings(
                env.get("AWS_ENDPOINT_URL") or None,
                env.get("AWS_ACCESS_KEY_ID") or None,
                env.get("AWS_SECRET_ACCESS_KEY") or None,
            ),
            model_cache=Path(env.get(ENV_MODEL_CACHE) or DEFAULT_MODEL_CACHE).expanduser(),
            node_model_cache=env.get(ENV_NODE_MODEL_CACHE) or None,
            grants=store_grants,
            egress=egress_rules,
            limits=runner_limits,
        )
