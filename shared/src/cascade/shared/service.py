"""Runs a service process: logging first, then uvicorn on the settings' host and port."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from cascade.shared.gc_tuning import tune_garbage_collector
from cascade.shared.logging import configure_logging
from cascade.shared.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Serves `app` until SIGTERM/SIGINT; uvicorn's own logging goes through structlog."""
    configure_logging(settings.service_name, level=settings.log_level, json=settings.log_json)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
