"""`kubescribe-gateway`: the REST gateway, served by uvicorn, and its Prometheus metrics on a port of their own."""

from __future__ import annotations

import logging

import uvicorn
from prometheus_client import start_http_server

from kubescribe import kube
from kubescribe.gateway.access.caller import Access
from kubescribe.gateway.app import create_app
from kubescribe.gateway.middleware import request_id
from kubescribe.gateway.settings import GatewaySettings
from kubescribe.gateway.state import Gateway
from kubescribe.gateway.stores.apiserver import ApiServerClient
from kubescribe.logs import JsonFormatter


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or None
        return True


def setup_logging(settings: GatewaySettings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(secrets=[settings.s3_secret_key.get_secret_value()]))
    handler.addFilter(_RequestIdFilter())
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def main() -> None:
    settings = GatewaySettings()
    setup_logging(settings)
    api_client = ApiServerClient(kube.configuration())
    app = create_app(Gateway.create(settings, api_client), Access.create(settings, api_client))
    start_http_server(settings.metrics_port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
