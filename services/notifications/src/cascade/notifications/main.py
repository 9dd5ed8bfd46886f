"""Composition root of the notifications service."""

from __future__ import annotations

from fastapi import FastAPI

from cascade.notifications.adapters import orm
from cascade.notifications.settings import NotificationsSettings
from cascade.shared.app import create_service_app
from cascade.shared.messaging.runtime import outbox_relay
from cascade.shared.service import serve


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    """Returns the notifications app built from `settings` (from the environment if omitted)."""
    return create_service_app(
        settings or NotificationsSettings(), lifespans=[outbox_relay(orm.outbox)]
    )


def main() -> None:
    """Serves the notifications API."""
    settings = NotificationsSettings()
    serve(create_app(settings), settings)
