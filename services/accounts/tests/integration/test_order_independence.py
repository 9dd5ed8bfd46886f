"""The delinquency state is a function of the set of events, not of their arrival order.

Each account's events of a day are shuffled into 20 seeded orders, delivered twice (and
once more under a new event id: a duplicate by identity), and split into random batches;
with the business-day closes in sequence, every order gives the same final state and
the same emitted events. (Contact changes are the exception by design: each newer snapshot
is announced as it arrives, so how many are announced depends on arrival order; the final
snapshot does not, and it is part of the compared state.) Events that arrive after the
close that should have counted them give the same final state plus corrective events.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.adapters import orm
from cascade.accounts.entrypoints.consumers import GROUP_ID, batch_handler
from cascade.shared.contracts import accounts as contract
from cascade.shared.messaging import inbox
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.corebanking import CoreBanking, business_day_closed, decoded

from .conftest import default_policies
from .scenarios import LAST_DAY, SCENARIOS, Arrivals, day

pytestmark = pytest.mark.integration
ORDERS = 20


async def _deliver(sessions: async_sessionmaker[AsyncSession], events: list[DecodedEvent]) -> None:
    """Delivers one fetched batch as the consumer does: inbox first, then the handler."""
    by_product = default_policies()
    handler = batch_handler(by_product, by_product["credit_card"])
    async with sessions() as session, session.begin():
        ids = list(dict.fromkeys(e.envelope.id for e in events))
        new = await inbox.claim_new(session, orm.inbox, GROUP_ID, ids, 3600)
        fresh = {e.envelope.id: e for e in events if e.envelope.id in new}
        refused = await handler(session, list(fresh.values()))
    assert refused == []


def _copy_with_new_id(envelope: Envelope) -> Envelope:
    return envelope.model_copy(update={"id": str(uuid.uuid4())})


async def _run(
    sessions: async_sessionmaker[AsyncSession],
    runs: Sequence[tuple[dict[str, Arrivals], random.Random | None]],
) -> None:
    """Delivers every run's events day by day, each run in its own order; then closes the day."""
    for n in range(LAST_DAY + 1):
        for histories, rng in runs:
            todays = [e for arrivals in histories.values() for d, e in arrivals if d == n]
            if rng is not None:
                todays = todays * 2 + [_copy_with_new_id(e) for e in todays]
                rng.shuffle(todays)
            while todays:
                size = rng.randint(1, 4) if rng else len(todays)
                await _deliver(sessions, [decoded(e) for e in todays[:size]])
                todays = todays[size:]
        await _deliver(sessions, [decoded(business_day_closed(day(n)))])


_STATE = (
    "status, days_past_due, bucket, arrears_minor, oldest_unpaid_due_date, unpaid_since, "
    "counted_paid_minor, closed_on, customer->>'phone' AS phone"
)


async def _outcome(sessions: async_sessionmaker[AsyncSession], prefix: str) -> dict[str, Any]:
    """Returns each scenario's final state and emitted events, without ids and times."""
    async with sessions() as session:
        states = await session.execute(
            text(
                f"SELECT account_id, {_STATE} FROM account JOIN account_contact "  # noqa: S608
                "USING (account_id) WHERE account_id LIKE :p"
            ),
            {"p": f"{prefix}%"},
        )
        rows = await session.execute(
            text(
                "SELECT message_key, payload FROM outbox_message "
                "WHERE message_key LIKE :p ORDER BY id"
            ),
            {"p": f"{prefix}%"},
        )
        outcome: dict[str, Any] = {
            r.account_id.removeprefix(prefix): dict(r._mapping) | {"account_id": None}
            for r in states
        }
        emitted: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            event = json.loads(bytes(row.payload))
            if event["type"] == contract.CONTACT_CHANGED:
                continue
            data = {k: v for k, v in event["data"].items() if k != "account_id"}
            emitted[row.message_key.removeprefix(prefix)].append((event["type"], data))
    return {"state": outcome, "events": dict(emitted)}


def _histories(prefix: str, late: bool = False) -> dict[str, Arrivals]:
    histories = {name: build(CoreBanking(f"{prefix}{name}")) for name, build in SCENARIOS.items()}
    if late:  # payments and an installment arrive days after the close that should count them
        histories = {
            name: [
                (n + 3 if e.type.endswith(("payment.received", "installment.due")) and n else n, e)
                for n, e in arrivals
            ]
            for name, arrivals in histories.items()
        }
    return histories


async def test_shuffled_and_duplicated_days_give_one_state_and_one_event_stream(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs = [(_histories(f"O{seed:02d}-"), random.Random(seed)) for seed in range(ORDERS)]
    await _run(sessions, runs)
    baseline = await _outcome(sessions, "O00-")
    differing = [
        seed for seed in range(1, ORDERS) if await _outcome(sessions, f"O{seed:02d}-") != baseline
    ]

    assert differing == []
    assert baseline["state"]["late"]["status"] == "current"
    assert baseline["state"]["partial"]["status"] == "delinquent"
    assert baseline["state"]["closed"]["phone"] == "+8613700137000"  # the newest snapshot
    assert any(t.endswith("account-cured.v1") for t, _ in baseline["events"]["late"])


async def test_late_events_give_the_in_order_state_plus_corrective_events(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _run(sessions, [(_histories("IN-"), None), (_histories("LATE-", late=True), None)])
    in_order, late = await _outcome(sessions, "IN-"), await _outcome(sessions, "LATE-")
    corrective = [
        (name, t)
        for name, events in late["events"].items()
        for t, data in events
        if data.get("trigger") == "correction"
    ]

    assert late["state"] == in_order["state"]
    assert ("late", "cascade.accounts.account-cured.v1") in corrective
    assert not any(
        data.get("trigger") == "correction"
        for events in in_order["events"].values()
        for _, data in events
    )
