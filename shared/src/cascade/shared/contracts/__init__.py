"""The event contracts the platform reads and writes: payload models, registry, catalogue.

`default_registry()` knows every event type; the catalogue (`shared/schemas/`) is
generated from it, so adding a type here documents it too.
"""

from __future__ import annotations

from collections.abc import Callable

from cascade.shared.contracts.accounts import accounts_event_types
from cascade.shared.contracts.corebanking import corebanking_event_types
from cascade.shared.messaging.registry import EventRegistry, EventType

__all__ = [
    "accounts_event_types",
    "corebanking_event_types",
    "default_registry",
    "event_type_families",
]


def event_type_families() -> list[Callable[[], list[EventType]]]:
    """Return the functions listing each family of event types, one per producer."""
    # Later issues append their families here (cases, notifications, legal).
    return [
        corebanking_event_types,
        accounts_event_types,
    ]


def default_registry() -> EventRegistry:
    """Return a registry of every event type the platform knows."""
    return EventRegistry(event_type for family in event_type_families() for event_type in family())
