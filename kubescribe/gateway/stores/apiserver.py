"""The gateway's client of the Kubernetes API server: every call it makes has a timeout (unless the call names its
own), and an API server that cannot be reached, does not answer in time or fails (5xx, 429) is raised as
Unavailable, which routes answer with 503."""

from __future__ import annotations

import logging
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client import rest

from kubescribe.gateway.errors import Unavailable
from kubescribe.kube import TimedApiClient

log = logging.getLogger("kubescribe.gateway.apiserver")

API_SERVER = "the Kubernetes API server"
REQUEST_TIMEOUT = (5.0, 30.0)
"""Seconds to connect, and to wait for each read of the answer."""
RETRIES = urllib3.Retry(total=2, read=0, backoff_factor=0.2)
"""Connections are tried again (the API server restarting); reads are not, so a call waits one read timeout."""


def is_failing(status: int) -> bool:
    return status >= 500 or status == 429


class ApiServerClient(TimedApiClient):
    def __init__(
        self, configuration: client.Configuration | None = None, timeout: tuple[float, float] = REQUEST_TIMEOUT
    ) -> None:
        configuration = configuration or client.Configuration.get_default_copy()
        configuration.retries = RETRIES
        super().__init__(timeout, configuration)

    def call_api(self, *args: Any, **kwargs: Any) -> rest.RESTResponse:
        try:
            response = super().call_api(*args, **kwargs)
        except rest.ApiException as error:
            if error.status is None or not (error.status == 0 or is_failing(error.status)):
                raise  # status 0: TLS or proxy failures, raised before any answer
            raise _unavailable(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _unavailable(error) from error
        if is_failing(response.status):
            response.read()
            raise _unavailable(f"HTTP {response.status}")
        return response


def _unavailable(cause: object) -> Unavailable:
    log.warning("%s is unavailable: %s", API_SERVER, cause)
    return Unavailable(API_SERVER)
