"""run_in_background: work runs while the context is open and is stopped with it."""

from __future__ import annotations

import asyncio

import pytest

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.runtime import run_in_background

pytestmark = pytest.mark.unit


async def test_work_is_waited_for_after_stop_is_set() -> None:
    stop, finished = asyncio.Event(), []

    async def work() -> None:
        await stop.wait()
        finished.append(True)

    async with run_in_background(work(), stop):
        assert not stop.is_set()

    assert finished == [True]


async def test_work_past_its_grace_period_is_cancelled() -> None:
    stop, cancelled = asyncio.Event(), []

    async def stuck() -> None:  # ignores stop, as a call on a hung database would
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async with asyncio.timeout(5):  # without the grace period, the exit would hang here
        async with run_in_background(stuck(), stop, grace_s=0.01):
            pass

    assert cancelled == [True]


async def test_a_failure_of_the_work_reaches_the_caller() -> None:
    stop = asyncio.Event()

    async def failing() -> None:
        await stop.wait()
        raise TimeoutError("the work's own")

    with pytest.raises(TimeoutError, match="the work's own"):
        async with run_in_background(failing(), stop, grace_s=1.0):
            pass


async def test_work_that_ends_on_an_error_is_listed_at_once_and_work_that_stops_is_not() -> None:
    stop = asyncio.Event()
    ended: list[str] = []
    listed_while_running: list[str] = []

    async def failing() -> None:
        raise RuntimeError("an unsafe configuration")

    async def stopping() -> None:
        await stop.wait()

    async def listed() -> bool:
        return bool(ended)

    async def serve() -> None:
        async with (
            run_in_background(stopping(), stop, name="relay", ended=ended),
            run_in_background(failing(), stop, name="consumer g", ended=ended),
        ):
            await wait_until_async(listed, 5, "the failed work to be listed")
            listed_while_running.extend(ended)

    with pytest.raises(RuntimeError):
        await serve()

    assert listed_while_running == ["consumer g"]  # while the service still ran
    assert ended == ["consumer g"]  # and the relay, stopped, is not listed
