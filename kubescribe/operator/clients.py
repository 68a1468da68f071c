"""The operator's clients of the API server and of its store. Every call they make ends within
`settings.request_timeout_seconds`, with an answer or an error, so no pass of the reconcile loop, no webhook
delivery and no finalizer waits forever on a connection that never answers."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException
from minio import Minio

from kubescribe import kube, s3
from kubescribe.api.timestamps import format_timestamp
from kubescribe.api.v1alpha1 import API_VERSION, KIND
from kubescribe.operator.settings import OperatorSettings

log = logging.getLogger("kubescribe.operator")


def api_client(settings: OperatorSettings) -> kube.TimedApiClient:
    """The API server's client, configured as kubectl would be (in cluster, or from the kubeconfig). A call is not
    retried: the loop's next pass is the retry."""
    configuration = kube.configuration()
    configuration.retries = False
    return kube.TimedApiClient(settings.request_timeout_seconds, configuration)


def store(settings: OperatorSettings) -> Minio:
    """The store's client, with the operator's keys. A call is not retried: the loop's next pass and the finalizer's
    next attempt are the retries."""
    timeout = urllib3.Timeout(total=settings.request_timeout_seconds)
    pool = urllib3.PoolManager(**{**s3.pool_settings(), "timeout": timeout, "retries": False})
    return s3.client(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        region=settings.s3_region,
        http_client=pool,
    )


def post_event(
    core: client.CoreV1Api, tj: Mapping[str, Any], kind: str, reason: str, message: str, *, now: datetime.datetime
) -> None:
    """Records an Event of `kind` (Normal or Warning) about the job; a refusal is logged, not raised."""
    metadata = tj["metadata"]
    stamp = format_timestamp(now)
    body = {
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": "kubescribe-operator"},
        "reportingComponent": "kubescribe-operator",
    }
    try:
        core.create_namespaced_event(metadata["namespace"], body)
    except (ApiException, urllib3.exceptions.HTTPError) as error:
        reason_text = error.reason if isinstance(error, ApiException) else type(error).__name__
        log.warning("event %s for %s/%s failed: %s", reason, metadata["namespace"], metadata["name"], reason_text)
