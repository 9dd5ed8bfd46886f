"""Composition root of the accounts service."""

from __future__ import annotations

from fastapi import FastAPI

from cascade.accounts.adapters import orm
from cascade.accounts.domain.model import Policy
from cascade.accounts.entrypoints import consumers
from cascade.accounts.entrypoints.api.router import router
from cascade.accounts.entrypoints.held_gauges import held_event_gauges
from cascade.accounts.settings import PRODUCTS, AccountsSettings
from cascade.shared.app import create_service_app
from cascade.shared.messaging.runtime import event_consumer, outbox_relay
from cascade.shared.service import serve


def policies(settings: AccountsSettings) -> dict[str, Policy]:
    """Returns each product's delinquency policy, built once."""
    return {product: settings.policy(product) for product in PRODUCTS}


def create_app(settings: AccountsSettings | None = None) -> FastAPI:
    """Returns the accounts app built from `settings` (from the environment if omitted)."""
    settings = settings or AccountsSettings()
    by_product = policies(settings)
    consumer = event_consumer(
        consumers.consumer_config(
            settings.consumer_max_records,
            settings.consumer_group,
            settings.consumer_batch_timeout_s,
        ),
        consumers.corebanking_registry(),
        orm.inbox,
        consumers.batch_handler(
            by_product, settings.policy(""), consumers.dead_letter_route(settings.consumer_group)
        ),
    )
    lifespans = [
        outbox_relay(orm.outbox),
        held_event_gauges(settings.held_gauges_every_s),
        *([consumer] if settings.consume_events else []),
    ]
    app = create_service_app(settings, routers=[router], lifespans=lifespans)
    app.state.policies = by_product
    return app


def main() -> None:
    """Serves the accounts API."""
    settings = AccountsSettings()
    serve(create_app(settings), settings)
