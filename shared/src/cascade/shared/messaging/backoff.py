"""Exponential backoff with jitter that a stop signal interrupts."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

from cascade.shared.logging import get_logger

log = get_logger(__name__)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Waits `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def repeat_until_stopped(
    stop: asyncio.Event, every_s: float, work: Callable[[], Awaitable[None]], failed: str
) -> None:
    """Runs `work` every `every_s` seconds until `stop` is set.

    For background upkeep (measuring, pruning, sweeping): a failure, usually the database
    being down, is logged as event `failed` and the work simply runs again next time.
    """
    while not stop.is_set():
        try:
            await work()
        except Exception as error:
            log.warning(failed, error_class=type(error).__name__)
        await wait_or_stop(stop, every_s)


class Backoff:
    """Delays that double from `initial_delay_s` up to `max_delay_s`, with full jitter."""

    def __init__(self, initial_delay_s: float = 0.1, max_delay_s: float = 5.0) -> None:
        self._initial = initial_delay_s
        self._max = max_delay_s
        self.attempts = 0

    def next_delay(self) -> float:
        """Returns the next delay and counts the attempt."""
        # The exponent is capped: 2.0**1024 overflows, after an hour of fast failures.
        ceiling = min(self._max, self._initial * 2 ** min(self.attempts, 32))
        self.attempts += 1
        # Jitter spreads replicas' retries so they do not hit a recovering database at once.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - not for security

    async def wait(self, stop: asyncio.Event) -> None:
        """Waits the next delay, or less if `stop` is set."""
        await wait_or_stop(stop, self.next_delay())

    def reset(self) -> None:
        """Starts again from the initial delay after a success."""
        self.attempts = 0
