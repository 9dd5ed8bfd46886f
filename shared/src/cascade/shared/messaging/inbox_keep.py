"""How long a consumer's inbox remembers event ids: read from the broker at start-up.

The declaration gives a keep per topic (topology.inbox_keep_ms), but a topic that exists
keeps its records as the broker has it configured, which can be longer. A consumer reads
its topics from the broker before it consumes, and keeps ids as long as either says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from cascade.shared.logging import get_logger
from cascade.shared.messaging.backoff import Backoff
from cascade.shared.messaging.errors import is_transient
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S
from cascade.shared.messaging.topic_drift import inbox_keep_s_on_broker
from cascade.shared.messaging.topology import DAY_S

log = get_logger(__name__)

T = TypeVar("T")

READ_TIMEOUT_S = 15.0  # one attempt at reading the topics' configs
# The consumer's statement takes the keep as an integer number of seconds (68 years).
INBOX_KEEP_MAX_S = 2**31 - 1


async def read_inbox_keep_s(
    bootstrap_servers: str, service: str, declared: Mapping[str, int], stop: asyncio.Event
) -> dict[str, int]:
    """Returns the inbox's keep per topic `service` consumes: `declared`, or longer where
    the broker keeps a topic's records longer.

    Retried while the broker is unreachable: the consumer cannot consume before it is
    back. Any other failure (a broker that refuses DescribeConfigs) leaves the keep as
    declared, with a warning; so does a stop before the broker answers.
    """
    backoff = Backoff(max_delay_s=10.0)
    while not stop.is_set():
        try:
            read = await _unless_stopped(_read(bootstrap_servers, service), stop)
        except Exception as error:
            if not is_transient(error):
                log.warning("inbox.keep_as_declared", error_class=type(error).__name__)
                return dict(declared)
            log.warning("inbox.keep_read_retrying", error_class=type(error).__name__)
            await backoff.wait(stop)
            continue
        if read is None:
            break
        on_broker, not_shown = read
        for name in not_shown:  # missing, or not described to this service's principal
            log.warning("inbox.keep_topic_not_shown", topic=name)
        return keep_s(declared, on_broker)
    return dict(declared)


async def _read(bootstrap_servers: str, service: str) -> tuple[dict[str, int | None], list[str]]:
    async with asyncio.timeout(READ_TIMEOUT_S):
        return await inbox_keep_s_on_broker(bootstrap_servers, service)


def keep_s(declared: Mapping[str, int], on_broker: Mapping[str, int | None]) -> dict[str, int]:
    """Returns the keep per topic from the declared one and the broker's (None: a topic
    on the way keeps events for ever, and gets the longest keep of all)."""
    longest = max([INBOX_KEEP_UNLISTED_S, *(k for k in on_broker.values() if k is not None)])
    keeps = {}
    for name, wanted in declared.items():
        kept = on_broker.get(name, wanted)
        if kept is None:
            log.error("inbox.keep_unbounded", topic=name, kept_days=longest // DAY_S)
            kept = longest
        elif kept > wanted:
            log.warning("inbox.keep_longer_than_declared", topic=name, kept_days=kept // DAY_S)
        keeps[name] = min(max(kept, wanted), INBOX_KEEP_MAX_S)
    return keeps


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """Returns what `work` returns, or None as soon as `stop` is set (`work` cancelled)."""
    task = asyncio.ensure_future(work)
    # Retrieved in any case: a failure that lost the race must not warn when collected.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            # Not `await task`: its outcome must not replace a cancellation of the caller.
            await asyncio.wait({task})
    return None if task.cancelled() else task.result()
