"""`make bench-aging`: one business-day close end to end, at 1,000,000 then 5,000,000 accounts.

A fresh Apache Kafka broker and PostgreSQL are started here. Each run loads a portfolio
in set-based SQL (accounts, installments, payments and bucket history as at the previous
business date), runs the accounts service in this process (its consumer and outbox relay,
as `create_app` wires them), produces one `corebanking.business-day.closed` and times
the close until every event it wrote is on `accounts.delinquency.v1`. Both runs have the
same delinquent accounts, so the second shows whether the cost follows them or all the
accounts. The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cascade.accounts.benchmarks.portfolio import AMOUNTS, Portfolio, check_loaded, load
from cascade.accounts.benchmarks.probe import SAMPLE, settings, time_close, verify_sample
from cascade.shared import migrations
from cascade.shared.benchmarks.infra import fresh_infrastructure
from cascade.shared.db import create_database, database_url, drop_database
from cascade.shared.logging import configure_logging
from cascade.shared.messaging.admin import apply_topology

SLOW_STATEMENT_MS = 100  # statements at least this long are logged, the top ones reported


@dataclass
class CloseFigures:
    accounts: int
    delinquent: int
    load_seconds: float
    close_seconds: float
    sql_seconds: float
    pickup_seconds: float
    events: int
    aged: int
    by_type: dict[str, int]
    slow_statements: list[tuple[float, str]]

    @property
    def relay_seconds(self) -> float:
        return self.close_seconds - self.sql_seconds


async def one_run(
    home: Path, server_url: str, bootstrap: str, log_file: Path, name: str, portfolio: Portfolio
) -> CloseFigures:
    """Loads `portfolio` into a fresh database and times one close of it."""
    await create_database(server_url, name)
    url = database_url(server_url, name)
    await asyncio.to_thread(migrations.upgrade, "cascade.accounts", url)
    config = settings(home, url, bootstrap)
    buckets = config.policy("").buckets
    for product in AMOUNTS:
        assert config.policy(product).buckets == buckets, "one bucket set for every product"
    print(f"loading {portfolio.accounts:,} accounts ({portfolio.delinquent:,} delinquent) ...")
    load_seconds = await load(url, portfolio, buckets)
    expected = await check_loaded(url, portfolio, buckets)
    print(f"  loaded and analysed in {load_seconds:.1f} s")
    await _execute(
        server_url, f'ALTER DATABASE "{name}" SET log_min_duration_statement = {SLOW_STATEMENT_MS}'
    )
    close_seconds, sql_seconds, pickup, events, aged, statements = await time_close(
        home, url, bootstrap, log_file, expected
    )
    by_type = await verify_sample(url, bootstrap, expected)
    return CloseFigures(
        accounts=portfolio.accounts,
        delinquent=portfolio.delinquent,
        load_seconds=load_seconds,
        close_seconds=close_seconds,
        sql_seconds=sql_seconds,
        pickup_seconds=pickup,
        events=events,
        aged=aged,
        by_type=by_type,
        slow_statements=statements,
    )


async def _execute(server_url: str, sql: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


def report(figures: CloseFigures) -> None:
    """Prints one run's figures for people."""
    print(
        f"close of {figures.accounts:,} accounts ({figures.delinquent:,} delinquent, "
        f"{figures.aged:,} aged): {figures.close_seconds:.2f} s end to end, "
        f"{figures.accounts / figures.close_seconds:,.0f} accounts/s"
    )
    print(
        f"  ageing transaction committed after {figures.sql_seconds:.2f} s "
        f"(consumer picked the event up after {figures.pickup_seconds:.2f} s); "
        f"relay {figures.relay_seconds:.2f} s for {figures.events:,} events "
        f"({figures.events / max(figures.relay_seconds, 1e-9):,.0f} events/s)"
    )
    names = ", ".join(f"{t.split('.')[2]} {n:,}" for t, n in sorted(figures.by_type.items()))
    print(f"  events: {names}; {SAMPLE} sampled events decoded, validated and checked")
    # The close's statements one by one; the relay's repeated ones summed by kind.
    totals: dict[str, list[float]] = {}
    for ms, words in figures.slow_statements:
        totals.setdefault(words, []).append(ms)
    for words, times in sorted(totals.items(), key=lambda item: -sum(item[1]))[:10]:
        count = f"{len(times)}x" if len(times) > 1 else ""
        print(f"  {sum(times):9.1f} ms {count:>4} {words[:80]}")


async def measure(home: Path, server_url: str, bootstrap: str, log_file: Path) -> None:
    """Runs the close at both sizes and prints the figures, the last line as JSON."""
    accounts = int(os.environ.get("BENCH_ACCOUNTS", "1000000"))
    delinquent = int(os.environ.get("BENCH_DELINQUENT", "100000"))
    large = int(os.environ.get("BENCH_ACCOUNTS_LARGE", str(accounts * 5)))
    await apply_topology(bootstrap)
    small = await one_run(
        home, server_url, bootstrap, log_file, "aging1", Portfolio(accounts, delinquent, accounts)
    )
    report(small)
    await drop_database(server_url, "aging1")
    big = await one_run(
        home, server_url, bootstrap, log_file, "aging5", Portfolio(large, delinquent, accounts)
    )
    report(big)
    result = {
        "accounts": accounts,
        "delinquent": delinquent,
        "close_seconds": round(small.close_seconds, 2),
        "accounts_per_s": round(accounts / small.close_seconds),
        "close_seconds_5m": round(big.close_seconds, 2),
        "accounts_5m": large,
        "events": small.events,
        "sql_seconds": round(small.sql_seconds, 2),
        "relay_seconds": round(small.relay_seconds, 2),
        "sql_seconds_5m": round(big.sql_seconds, 2),
        "relay_seconds_5m": round(big.relay_seconds, 2),
        "load_seconds": round(small.load_seconds, 1),
        "load_seconds_5m": round(big.load_seconds, 1),
    }
    print(json.dumps(result))


def main() -> None:
    """Starts a fresh broker and database, measures, and stops them."""
    configure_logging("bench-aging", level="WARNING", json=False, stream=sys.stderr)
    with fresh_infrastructure("cascade-bench-aging-") as (home, broker, postgres):
        asyncio.run(measure(home, postgres.url(), broker.bootstrap_servers, postgres.log_file))


if __name__ == "__main__":
    main()
