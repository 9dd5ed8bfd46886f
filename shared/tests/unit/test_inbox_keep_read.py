"""Reading the inbox's keep from the broker: what a refusal, a stop and a missing topic do.

The broker is replaced by a fake `inbox_keep_s_on_broker`; the real one is exercised in
the integration tests (test_topic_drift.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from cascade.shared.messaging import inbox_keep
from cascade.shared.messaging.inbox_keep import read_inbox_keep_s

pytestmark = pytest.mark.unit

DECLARED = {"events": 100, "days": 200}
Read = Callable[[str, str], Awaitable[tuple[dict[str, int | None], list[str]]]]


def _broker(monkeypatch: pytest.MonkeyPatch, read: Read) -> None:
    monkeypatch.setattr(inbox_keep, "inbox_keep_s_on_broker", read)


async def test_a_broker_that_refuses_leaves_the_keep_as_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(bootstrap: str, service: str) -> tuple[dict[str, int | None], list[str]]:
        raise TopicAuthorizationFailedError("no DescribeConfigs")

    _broker(monkeypatch, refused)

    assert await read_inbox_keep_s("b", "svc", DECLARED, asyncio.Event()) == DECLARED


async def test_a_stop_interrupts_a_read_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    asked, cancelled = asyncio.Event(), asyncio.Event()

    async def hangs(bootstrap: str, service: str) -> tuple[dict[str, int | None], list[str]]:
        asked.set()
        try:
            await asyncio.Event().wait()  # a broker that never answers
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    _broker(monkeypatch, hangs)
    stop = asyncio.Event()
    reading = asyncio.create_task(read_inbox_keep_s("b", "svc", DECLARED, stop))
    await asyncio.wait_for(asked.wait(), 5.0)

    stop.set()

    assert await asyncio.wait_for(reading, 5.0) == DECLARED  # well before the read's 15 s
    assert cancelled.is_set()


async def test_what_the_broker_says_is_taken_topic_by_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def answers(bootstrap: str, service: str) -> tuple[dict[str, int | None], list[str]]:
        return {"events": 150, "days": None}, ["svc.replay.v1"]

    _broker(monkeypatch, answers)

    keeps = await read_inbox_keep_s("b", "svc", DECLARED, asyncio.Event())

    assert keeps == {"events": 150, "days": inbox_keep.INBOX_KEEP_UNLISTED_S}
