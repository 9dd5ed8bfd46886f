"""Composition root of the cases service."""

from __future__ import annotations

from fastapi import FastAPI

from cascade.cases.adapters import orm
from cascade.cases.settings import CasesSettings
from cascade.shared.app import create_service_app
from cascade.shared.messaging.runtime import outbox_relay
from cascade.shared.service import serve


def create_app(settings: CasesSettings | None = None) -> FastAPI:
    """Returns the cases app built from `settings` (from the environment if omitted)."""
    return create_service_app(settings or CasesSettings(), lifespans=[outbox_relay(orm.outbox)])


def main() -> None:
    """Serves the cases API."""
    settings = CasesSettings()
    serve(create_app(settings), settings)
