"""Fixtures of the shared kit's tests (infrastructure fixtures come from cascade.shared.testing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from cascade.shared.infra.tansu import EmbeddedKafkaBroker


@pytest_asyncio.fixture
async def tansu(tmp_path: Path) -> AsyncIterator[EmbeddedKafkaBroker]:
    """A private embedded (Tansu) broker: it starts in about a second."""
    broker = EmbeddedKafkaBroker(tmp_path / "tansu")
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)
