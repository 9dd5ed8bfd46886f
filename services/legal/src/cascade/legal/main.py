"""Composition root of the legal service."""

from __future__ import annotations

from fastapi import FastAPI

from cascade.legal.adapters import orm
from cascade.legal.settings import LegalSettings
from cascade.shared.app import create_service_app
from cascade.shared.messaging.runtime import outbox_relay
from cascade.shared.service import serve


def create_app(settings: LegalSettings | None = None) -> FastAPI:
    """Returns the legal app built from `settings` (from the environment if omitted)."""
    return create_service_app(settings or LegalSettings(), lifespans=[outbox_relay(orm.outbox)])


def main() -> None:
    """Serves the legal API."""
    settings = LegalSettings()
    serve(create_app(settings), settings)
