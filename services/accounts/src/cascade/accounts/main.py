"""Composition root of the accounts service."""

from __future__ import annotations

from fastapi import FastAPI

from cascade.accounts.adapters import orm
from cascade.accounts.settings import AccountsSettings
from cascade.shared.app import create_service_app
from cascade.shared.messaging.runtime import outbox_relay
from cascade.shared.service import serve


def create_app(settings: AccountsSettings | None = None) -> FastAPI:
    """Returns the accounts app built from `settings` (from the environment if omitted)."""
    return create_service_app(settings or AccountsSettings(), lifespans=[outbox_relay(orm.outbox)])


def main() -> None:
    """Serves the accounts API."""
    settings = AccountsSettings()
    serve(create_app(settings), settings)
