"""`kubescribe-model-cache`: the node's model cache, served by uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from kubescribe.logs import JsonFormatter
from kubescribe.modelcache.app import create_app
from kubescribe.modelcache.disk import Disk
from kubescribe.modelcache.settings import CacheSettings


def main() -> None:
    settings = CacheSettings()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    app = create_app(settings, Disk(settings.directory, settings.max_bytes))
    # No access log: its lines would say nothing the app's own do not, and requests carry no secrets in their paths.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
