"""R10: dead letters replayed after the fix are applied exactly once; a second replay adds 0.

The handler refuses every event of one step (`--fail-seq`): those events are dead-lettered
with reason handler_failed. The "fixed" consumer (same group, no failure) also subscribes
to the service's replay topic. Replaying puts each dead letter's original key and value
there, so the event keeps its id and the inbox turns a second replay into a no-op.
The operator CLI lists the dead letters, one line each, without their personal data.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence

import pytest

from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.replay import (
    REPLAYED_FROM_HEADER,
    read_dead_letters,
    replay_dead_letters,
)
from cascade.shared.testing.bus import STEP_RECORDED, make_steps, read_effects
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import consume, create_topics, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000
ACCOUNTS = 10
FAIL_SEQ = 7  # one step of each of the 10 accounts: 10 events refused
DEADLINE_S = 120.0
SERVICE = "bus-tests"
CANARY_PHONE = "+36 30 765 4321"
CANARY_EMAIL = "replay.canary@example.com"


def _with_canary(envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Puts fake personal data in the refused events' notes (so, in the dead letters)."""
    note = f"call {CANARY_PHONE}, mail {CANARY_EMAIL}"
    return [
        e.model_copy(update={"data": {**e.data, "note": note}}) if e.data["seq"] == FAIL_SEQ else e
        for e in envelopes
    ]


def _consumer(
    workers: Callable[..., Worker], db: str, bootstrap: str, group: str, *extra: str
) -> Worker:
    return workers(
        "consume",
        *("--db", db, "--bootstrap", bootstrap, "--group", group, "--max-attempts", "2"),
        *extra,
    )


async def _cli(bootstrap: str, *args: str) -> str:
    """Runs `cascade dlq ...` in a subprocess; returns its standard output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "cascade.shared.cli", "dlq", *args, "--service", SERVICE),
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    assert process.returncode == 0, err.decode(errors="replace")
    return out.decode()


async def _wait_broken_done(
    bootstrap: str,
    db: str,
    group: str,
    events: str,
    produced: Sequence[Produced],
    refused: set[str],
) -> None:
    """Waits until every event but the refused ones is applied and the group is caught up."""
    await wait_all_applied(db, [p for p in produced if p.event_id not in refused], DEADLINE_S)
    await wait_lag_zero(bootstrap, group, [events], DEADLINE_S)


async def _effects_per_event(db: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event_id, _, _ in await read_effects(db):
        counts[event_id] = counts.get(event_id, 0) + 1
    return counts


async def test_replayed_dead_letters_apply_once_and_a_second_replay_adds_nothing(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    bootstrap, (events, dlt) = kafka_bootstrap_servers, bus_topics
    replay = unique_name("replay")
    await create_topics(bootstrap, [replay], partitions=3)
    envelopes = _with_canary(make_steps(N_EVENTS, ACCOUNTS))
    refused = {e.id for e in envelopes if e.data["seq"] == FAIL_SEQ}
    produced = await produce_envelopes(bootstrap, events, envelopes)
    group = unique_name("replay-group")

    # 1. The broken handler: the refused events go to the dead-letter topic.
    broken = _consumer(
        workers,
        bus_database,
        bootstrap,
        group,
        *("--topic", events, "--dead-letter-topic", dlt, "--fail-seq", str(FAIL_SEQ)),
    ).start()
    await _wait_broken_done(bootstrap, bus_database, group, events, produced, refused)
    broken.stop()
    letters = await read_dead_letters(bootstrap, SERVICE, dead_letter_topic=dlt)
    assert {letter.header("dlt-event-id") for letter in letters} == refused
    assert {letter.header("dlt-reason") for letter in letters} == {"handler_failed"}
    assert refused.isdisjoint(await _effects_per_event(bus_database))

    # 2. The fix: the same group, no failure, also reading the replay topic.
    fixed = _consumer(
        workers,
        bus_database,
        bootstrap,
        group,
        *("--topic", events, "--topic", replay, "--dead-letter-topic", dlt),
    ).start()
    replayed = await replay_dead_letters(
        bootstrap, SERVICE, dead_letter_topic=dlt, replay_topic=replay
    )
    assert replayed == len(refused)
    await wait_all_applied(bus_database, produced, DEADLINE_S)
    await wait_lag_zero(bootstrap, group, [events, replay], DEADLINE_S)
    after_first = await _effects_per_event(bus_database)
    assert {event_id: after_first[event_id] for event_id in refused} == dict.fromkeys(refused, 1)

    # 3. A second replay, through the operator CLI: consumed, and 0 new effects.
    out = await _cli(bootstrap, "replay", "--dead-letter-topic", dlt, "--replay-topic", replay)
    assert out.strip() == f"{len(refused)} dead letter(s) replayed"
    await wait_lag_zero(bootstrap, group, [events, replay], DEADLINE_S)
    fixed.stop()
    assert await _effects_per_event(bus_database) == after_first
    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    copies = await consume(bootstrap, replay, 2 * len(refused))
    assert len(copies) == 2 * len(refused)


async def test_replay_sends_the_original_record_with_its_source_offset(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    bootstrap, (events, dlt) = kafka_bootstrap_servers, bus_topics
    replay = unique_name("replay")
    await create_topics(bootstrap, [replay], partitions=3)
    envelopes = make_steps(N_EVENTS, ACCOUNTS)
    refused = {e.id for e in envelopes if e.data["seq"] == FAIL_SEQ}
    produced = await produce_envelopes(bootstrap, events, envelopes)
    group = unique_name("replay-group")
    broken = _consumer(
        workers,
        bus_database,
        bootstrap,
        group,
        *("--topic", events, "--dead-letter-topic", dlt, "--fail-seq", str(FAIL_SEQ)),
    ).start()
    await _wait_broken_done(bootstrap, bus_database, group, events, produced, refused)
    broken.stop()
    letters = await read_dead_letters(bootstrap, SERVICE, dead_letter_topic=dlt)
    chosen = letters[3]

    count = await replay_dead_letters(
        bootstrap, SERVICE, offsets=[chosen.offset], dead_letter_topic=dlt, replay_topic=replay
    )

    assert count == 1
    (copy,) = await read_dead_letters(bootstrap, SERVICE, dead_letter_topic=replay)
    assert (copy.key, copy.value) == (chosen.key, chosen.value)
    assert copy.headers == {REPLAYED_FROM_HEADER: str(chosen.offset)}
    with pytest.raises(ValueError, match="no dead letter at offset"):
        await replay_dead_letters(
            bootstrap, SERVICE, offsets=[10_000], dead_letter_topic=dlt, replay_topic=replay
        )


async def test_cli_lists_one_line_per_dead_letter_without_personal_data(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    bootstrap, (events, dlt) = kafka_bootstrap_servers, bus_topics
    envelopes = _with_canary(make_steps(N_EVENTS, ACCOUNTS))
    refused = {e.id for e in envelopes if e.data["seq"] == FAIL_SEQ}
    produced = await produce_envelopes(bootstrap, events, envelopes)
    group = unique_name("replay-group")
    broken = _consumer(
        workers,
        bus_database,
        bootstrap,
        group,
        *("--topic", events, "--dead-letter-topic", dlt, "--fail-seq", str(FAIL_SEQ)),
    ).start()
    await _wait_broken_done(bootstrap, bus_database, group, events, produced, refused)
    broken.stop()

    listed = (await _cli(bootstrap, "list", "--dead-letter-topic", dlt)).splitlines()
    first = listed[0].split()[0].removeprefix("offset=")
    shown = await _cli(bootstrap, "show", "--dead-letter-topic", dlt, "--offset", first)
    revealed = await _cli(
        bootstrap, "show", "--dead-letter-topic", dlt, "--offset", first, "--show-value"
    )

    assert len(listed) == len(refused)
    assert {line.split(" id=")[1].split()[0] for line in listed} == refused
    assert all("reason=handler_failed" in line and STEP_RECORDED in line for line in listed)
    assert all(f"original={events}/" in line for line in listed)
    for output in ("\n".join(listed), shown):
        assert CANARY_PHONE not in output
        assert CANARY_EMAIL not in output
    assert "value-size: " in shown
    assert "value: " not in shown
    # The canary really is in the value: only --show-value prints it.
    assert CANARY_PHONE in revealed
    assert CANARY_EMAIL in revealed
