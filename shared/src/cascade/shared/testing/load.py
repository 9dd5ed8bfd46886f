"""A business load for the fault tests: operations committed through the outbox, paced."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cascade.shared.messaging.backoff import Backoff
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.errors import is_transient, is_unique_violation
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.testing.bus import OUTBOX, make_steps
from cascade.shared.testing.history import Produced

TICKS_PER_SECOND = 4


class BusinessLoad:
    """Commits business operations, an event each in a transaction of its own, at most
    `per_second`, spread over `accounts` keys.

    An operation whose transaction fails while the database is unavailable is retried, as
    a client retries a request; `committed` lists those known to have committed.
    """

    def __init__(
        self, database_url: str, topic: str, *, per_second: int = 40, accounts: int = 30
    ) -> None:
        self.committed: list[Produced] = []
        self.retries = 0
        self._engine = create_async_engine(database_url, pool_size=2)
        self._topic = topic
        self._per_tick = max(per_second // TICKS_PER_SECOND, 1)
        self._accounts = accounts
        self._stop = asyncio.Event()

    async def run(self) -> None:
        sessions = async_sessionmaker(self._engine)
        try:
            while not self._stop.is_set():
                start = len(self.committed)
                for event in make_steps(self._per_tick, self._accounts, start=start):
                    await self._commit(sessions, event)
                    self.committed.append(Produced(event.id, event.subject, event.data["seq"]))
                await asyncio.sleep(1 / TICKS_PER_SECOND)  # pacing the load, not synchronisation
        finally:
            await self._engine.dispose()

    def stop(self) -> None:
        self._stop.set()

    async def _commit(self, sessions: async_sessionmaker[AsyncSession], event: Envelope) -> None:
        backoff, retried = Backoff(max_delay_s=1.0), False
        while True:
            try:
                async with sessions() as session, session.begin():
                    await add_to_outbox(session, OUTBOX, [(self._topic, event)])
                return
            except IntegrityError as error:
                # A retry refused for its event id: the first attempt did commit, and only
                # its reply was lost (the connection died during the COMMIT).
                if retried and is_unique_violation(error):
                    return
                raise
            except Exception as error:
                if not is_transient(error):
                    raise
            retried = True
            self.retries += 1
            await asyncio.sleep(backoff.next_delay())  # a client's retry delay
