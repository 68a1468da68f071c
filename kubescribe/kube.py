"""A client of the Kubernetes API server whose every call ends in time: each gets a timeout unless it names its
own. The operator and the gateway both build theirs on it."""

from __future__ import annotations

from typing import Any

from kubernetes import client


class TimedApiClient(client.ApiClient):  # type: ignore[misc]  # the client has no type hints
    """An ApiClient whose every request, unless it names its own `_request_timeout`, gets `timeout`: seconds for
    the whole request, or (connect, read) seconds."""

    def __init__(self, timeout: float | tuple[float, float], configuration: client.Configuration | None = None) -> None:
        super().__init__(configuration)
        self.timeout = timeout

    def call_api(self, *args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return super().call_api(*args, _request_timeout=_request_timeout or self.timeout, **kwargs)
