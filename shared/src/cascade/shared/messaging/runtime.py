"""Running the backbone inside a service: relay and consumer as tasks of the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from cascade.shared.app import Lifespan
from cascade.shared.db import make_probe_engine, make_sessionmaker
from cascade.shared.logging import get_logger
from cascade.shared.messaging.admin import apply_topology
from cascade.shared.messaging.backoff import Backoff, repeat_until_stopped
from cascade.shared.messaging.clients import DEAD_LETTER_MAX_BYTES, make_consumer, make_producer
from cascade.shared.messaging.consumer import BatchHandler, ConsumerConfig, EventConsumer
from cascade.shared.messaging.inbox_keep import read_inbox_keep_s
from cascade.shared.messaging.inbox_sweep import InboxSweep, measure_inbox
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.registry import EventRegistry
from cascade.shared.messaging.relay import OutboxRelay, RelaySettings
from cascade.shared.messaging.topic_drift import topology_drift
from cascade.shared.messaging.topology import TOPICS, inbox_keep_s
from cascade.shared.settings import BrokerKind, ServiceSettings

log = get_logger(__name__)

INBOX_MEASURE_EVERY_S = 60.0  # the inbox's size gauges
DRIFT_READ_TIMEOUT_S = 30.0


def bus_metrics(app: FastAPI) -> BusMetrics:
    """Returns the app's one set of bus metrics, registered in its registry."""
    if not hasattr(app.state, "bus_metrics"):
        app.state.bus_metrics = BusMetrics(app.state.registry)
    metrics: BusMetrics = app.state.bus_metrics
    return metrics


@asynccontextmanager
async def run_in_background(
    work: Coroutine[Any, Any, None],
    stop: asyncio.Event,
    grace_s: float | None = None,
    *,
    name: str | None = None,
    ended: list[str] | None = None,
) -> AsyncIterator[None]:
    """Runs `work` while the context is open; on exit sets `stop` and waits for `work`.

    With `grace_s`, the wait is bounded: work still running then is cancelled (a
    measurement stuck on a database that hangs must not hold up the service's stop).
    Work that ends on an error is logged, and its name added to `ended` if given.
    """
    task = asyncio.create_task(work, name=name or getattr(work, "__qualname__", None))
    task.add_done_callback(_log_failure)
    if ended is not None:
        task.add_done_callback(lambda done: _record_failure(done, ended))
    try:
        yield
    finally:
        stop.set()
        if grace_s is not None:
            await asyncio.wait({task}, timeout=grace_s)
        if grace_s is not None and task.cancel():  # still running past the grace period
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            await task


def _record_failure(task: asyncio.Task[None], ended: list[str]) -> None:
    if not task.cancelled() and task.exception() is not None:
        ended.append(task.get_name())


def _log_failure(task: asyncio.Task[None]) -> None:
    # At once: the exception is raised again only when the service stops, and until then
    # the service would run without, say, its consumer.
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("background.failed", task=task.get_name(), error_class=type(error).__name__)


async def _declare_topics(settings: ServiceSettings, stop: asyncio.Event) -> None:
    # In the background: a broker that is down must not keep the API from starting.
    backoff = Backoff(max_delay_s=10.0)
    while not stop.is_set():
        try:
            await apply_topology(
                settings.kafka.bootstrap_servers,
                replication_factor=settings.kafka.topic_replication_factor,
            )
        except Exception as error:
            log.warning("topics.declare_retrying", error_class=type(error).__name__)
            await backoff.wait(stop)
            continue
        log.info("topics.declared")
        await _report_drift(settings)
        return


async def _report_drift(settings: ServiceSettings) -> None:
    # Reported, never changed at start-up: a shorter retention would delete records, and
    # more partitions would move keys. `cascade topics apply --align-configs` aligns. Only
    # the topics this service owns or consumes: the ones its principal may describe.
    name = settings.service_name
    own = [spec for spec in TOPICS if name in (spec.owner, *spec.consumers)]
    try:
        async with asyncio.timeout(DRIFT_READ_TIMEOUT_S):
            drift = await topology_drift(
                settings.kafka.bootstrap_servers,
                own,
                replication_factor=settings.kafka.topic_replication_factor,
            )
    except Exception as error:
        log.warning("topics.drift_unknown", error_class=type(error).__name__, error=str(error))
        return
    for topic_name, differences in drift.items():
        log.warning("topics.drift", topic=topic_name, differences=differences)


def outbox_relay(outbox: Table) -> Lifespan:
    """Returns a lifespan that declares the topics and runs the service's outbox relay."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: ServiceSettings = app.state.settings
        relay = OutboxRelay(
            app.state.engine,
            outbox,
            lambda: make_producer(settings.kafka, client_id=f"{settings.service_name}-relay"),
            metrics=bus_metrics(app),
            settings=RelaySettings(embedded_broker=settings.broker is BrokerKind.EMBEDDED),
        )
        stop = asyncio.Event()
        async with (
            # A drift report still waiting on the broker must not hold up the stop.
            run_in_background(_declare_topics(settings, stop), stop, grace_s=5.0),
            run_in_background(
                relay.run(stop), stop, name="outbox relay", ended=app.state.ended_work
            ),
        ):
            yield

    return lifespan


def event_consumer(
    config: ConsumerConfig, registry: EventRegistry, inbox: Table, handler: BatchHandler
) -> Lifespan:
    """Returns a lifespan that runs one of the service's consumers, and its inbox's sweep."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, metrics = app.state.engine, bus_metrics(app)
        # Here, not in the task: a topic the topology cannot time fails the start-up.
        declared = config.inbox_keep_s or inbox_keep_s(app.state.settings.service_name)

        async def consume(stop: asyncio.Event) -> None:
            probe_engine = make_probe_engine(app.state.settings.database)
            try:
                consumer = await _consumer(
                    app, config, declared, registry, inbox, handler, stop, probe_engine
                )
                await consumer.run(stop)
            finally:
                await probe_engine.dispose()

        async def measure() -> None:
            await measure_inbox(engine, inbox, metrics)

        stop = asyncio.Event()
        name = f"consumer {config.group_id}"
        async with (
            run_in_background(consume(stop), stop, name=name, ended=app.state.ended_work),
            # Between statements the sweep stops at once; one in flight gets 5 s.
            run_in_background(InboxSweep(engine, inbox, metrics).run(stop), stop, grace_s=5.0),
            # A measurement stuck behind a lock (a migration's) must not hold up the stop.
            run_in_background(
                repeat_until_stopped(stop, INBOX_MEASURE_EVERY_S, measure, "inbox.measure_failed"),
                stop,
                grace_s=5.0,
            ),
        ):
            yield

    return lifespan


async def _consumer(
    app: FastAPI,
    config: ConsumerConfig,
    declared_keep_s: Mapping[str, int],
    registry: EventRegistry,
    inbox: Table,
    handler: BatchHandler,
    stop: asyncio.Event,
    probe_engine: AsyncEngine,
) -> EventConsumer:
    settings: ServiceSettings = app.state.settings
    name = settings.service_name
    safe_config = replace(
        config,
        embedded_broker=settings.broker is BrokerKind.EMBEDDED,
        service_version=app.version,
        # As long as the broker can bring an event back, unless the service says: a service
        # cannot leave its inbox on the longest time by forgetting to.
        inbox_keep_s=config.inbox_keep_s
        or await read_inbox_keep_s(settings.kafka.bootstrap_servers, name, declared_keep_s, stop),
    )
    return EventConsumer(
        safe_config,
        consumer_factory=lambda: make_consumer(
            settings.kafka, group_id=config.group_id, client_id=f"{name}-consumer"
        ),
        producer_factory=lambda: make_producer(
            settings.kafka, client_id=f"{name}-dlq", max_request_size=DEAD_LETTER_MAX_BYTES
        ),
        sessions=app.state.sessions,
        inbox_table=inbox,
        registry=registry,
        handler=handler,
        metrics=bus_metrics(app),
        probe_sessions=make_sessionmaker(probe_engine),
    )
