"""The Kubernetes API server's address and credentials, and a client of it whose every call ends in time: each gets
a timeout unless it names its own. The operator, the gateway and the runner all build theirs on these."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config

log = logging.getLogger(__name__)

TOKEN_REREAD_SECONDS = 60.0
"""How often a kubeconfig's token is read again, as client-go reads a `tokenFile` again: the token a pod is given
expires within hours, and its node replaces it before then."""


def configuration(reread_seconds: float = TOKEN_REREAD_SECONDS) -> client.Configuration:
    """Where the API server is and who to be, found as kubectl finds them: in a pod, its ServiceAccount's token (which
    the client reads again each minute itself); elsewhere the kubeconfig, whose token is read again every
    `reread_seconds`, so a long-running process outlives the token it started with."""
    found = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=found)
    except config.ConfigException:
        config.load_kube_config(client_configuration=found)
        found.refresh_api_key_hook = _kubeconfig_reader(reread_seconds, time.monotonic)
    return found


def _kubeconfig_reader(seconds: float, clock: Callable[[], float]) -> Callable[[client.Configuration], None]:
    next_read = clock() + seconds

    def reread(current: client.Configuration) -> None:
        nonlocal next_read
        if clock() < next_read:
            return
        next_read = clock() + seconds
        fresh = client.Configuration()
        try:
            config.load_kube_config(client_configuration=fresh)
        except Exception as error:  # the kubeconfig being replaced, say: the token read last serves
            log.warning("the kubeconfig could not be read again (%s)", type(error).__name__)
            return
        current.api_key = {**current.api_key, **fresh.api_key}

    return reread


class TimedApiClient(client.ApiClient):  # type: ignore[misc]  # the client has no type hints
    """An ApiClient whose every request, unless it names its own `_request_timeout`, gets `timeout`: seconds for
    the whole request, or (connect, read) seconds."""

    def __init__(self, timeout: float | tuple[float, float], configuration: client.Configuration | None = None) -> None:
        super().__init__(configuration)
        self.timeout = timeout

    def call_api(self, *args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return super().call_api(*args, _request_timeout=_request_timeout or self.timeout, **kwargs)
