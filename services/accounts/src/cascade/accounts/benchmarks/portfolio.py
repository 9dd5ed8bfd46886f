"""The `make bench-aging` portfolio, loaded in set-based SQL, and what its close must do."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.accounts.domain.buckets import BucketSet
from cascade.shared.messaging.tables import KEY_SLOTS, key_slot
from cascade.shared.testing.corebanking import business_day_closed

PREVIOUS = date(2026, 11, 30)  # the last business date closed when the portfolio is loaded
CLOSE = PREVIOUS + timedelta(days=1)  # the business date the benchmark closes
# One delinquent account in this many is current at PREVIOUS with an installment due that
# day unpaid: it becomes delinquent at the close (delinquency-started, bucket-changed).
NEWLY_EVERY = 20
CHUNK = 500_000  # accounts per loading statement

# Product mix (tenths of the portfolio) and each product's installment, in fen.
_PRODUCTS = ["credit_card"] * 5 + ["personal_loan"] * 2 + ["auto_loan"] * 2 + ["mortgage"]
AMOUNTS = {"credit_card": 60_000, "personal_loan": 250_000, "auto_loan": 420_000}
AMOUNTS["mortgage"] = 980_000


@dataclass(frozen=True)
class Portfolio:
    """`accounts` accounts; the delinquent ones are every `stride`-th of the first `span`."""

    accounts: int
    delinquent: int
    span: int

    @property
    def stride(self) -> int:
        return self.span // self.delinquent


@dataclass(frozen=True)
class Expected:
    """What the close must do, from the loaded state (no pauses, tolerances or payments)."""

    aged: int
    started: int
    bucket_changed: int

    @property
    def events(self) -> int:
        # delinquency-updated for every aged account: all of them are delinquent after it.
        return self.aged + self.started + self.bucket_changed


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _bucket_case(buckets: BucketSet, days: str, field: str) -> str:
    """Returns SQL giving the range of `days` past due: its label, or its min_days."""
    arms = []
    for r in buckets.ranges:
        test = f"{days} >= {r.min_days}" + (
            "" if r.max_days is None else f" AND {days} <= {r.max_days}"
        )
        arms.append(f"WHEN {test} THEN {_literal(r.label) if field == 'label' else r.min_days}")
    return f"CASE {' '.join(arms)} END"


# One row per account of generate_series(:lo, :hi, :step): its id, kind (current, late:
# delinquent already, newly: delinquent at the close), product, installment amount, days
# past due at PREVIOUS (late ones) and `u`, the due date of its oldest unpaid installment.
# OFFSET 0 keeps PostgreSQL from inlining the subqueries, which would compute `kind`, `k`
# and `u` again at every use.
_PROFILE = """
SELECT g, id, kind, k, (CAST(:products AS text[]))[pi + 1] AS product,
       (CAST(:amounts AS bigint[]))[pi + 1] + (h / 16 % 100) * 100 AS amount,
       CASE kind WHEN 'current' THEN CAST(:prev AS date) + 3 + CAST(h % 27 AS int)
                 WHEN 'late' THEN CAST(:prev AS date) - k
                 ELSE CAST(:prev AS date) END AS u
FROM (
    SELECT g, h, 'ACC-' || lpad(g::text, 10, '0') AS id, CAST(h % 10 AS int) AS pi,
           CASE WHEN g % :stride <> 0 OR g / :stride > :delinquent THEN 'current'
                WHEN (g / :stride) % :newly_every = 0 THEN 'newly' ELSE 'late' END AS kind,
           -- Skewed towards the early buckets, as roll rates make them: 1 to 240 days.
           1 + CAST(239 * power((h >> 12) % 1000 / 1000.0, 2) AS int) AS k
    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint), CAST(:step AS bigint)) AS g,
         LATERAL (SELECT (g * 2654435761) % 4294967296 AS h) AS hashed
    OFFSET 0
) AS base
OFFSET 0
"""

# The customer is a full contract snapshot: the close copies it into delinquency-started.
# json_build_object then one cast: jsonb_build_object is several times slower per field.
_CUSTOMER = """CAST(json_build_object(
    'customer_id', 'CUS-' || lpad(g::text, 10, '0'), 'full_name', '客户' || g,
    'national_id', '3101011990' || lpad((g % 100000000)::text, 8, '0'),
    'phone', '+86138' || lpad((g % 100000000)::text, 8, '0'),
    'email', 'customer' || g || '@example.com',
    'postal_address', json_build_object(
        'lines', json_build_array('上海市黄浦区中山东一路 ' || (g % 999 + 1) || ' 号'),
        'city', '上海', 'postal_code', '200002', 'country', 'CN'),
    'preferred_language', CASE WHEN g % 10 = 3 THEN 'en' ELSE 'zh-CN' END,
    'timezone', 'Asia/Shanghai', 'jurisdiction', 'CN') AS jsonb)"""

# Current accounts: installments due u-60 and u-30 (paid on the day), u (after the close).
# The others: u-30 (paid), u and u+30 (unpaid); so arrears at PREVIOUS are one or two.
_DUE = "u + 30 * (n - CASE kind WHEN 'current' THEN 3 ELSE 2 END)"


def _account_sql(buckets: BucketSet) -> str:
    return f"""
INSERT INTO account (account_id, product, currency, opened_on, opened_digest, key_slot,
    customer_id, jurisdiction, timezone, language, status, as_of_date, days_past_due, bucket,
    arrears_minor, oldest_unpaid_due_date, within_tolerance, unpaid_since, counted_paid_minor)
SELECT id, product, 'CNY', u - CASE kind WHEN 'current' THEN 90 ELSE 60 END,
       md5('opened:' || id), crc32(convert_to(id, 'UTF8')) % {KEY_SLOTS},
       'CUS-' || lpad(g::text, 10, '0'), 'CN', 'Asia/Shanghai',
       CASE WHEN g % 10 = 3 THEN 'en' ELSE 'zh-CN' END,
       CASE kind WHEN 'late' THEN 'delinquent' ELSE 'current' END, CAST(:prev AS date),
       CASE kind WHEN 'late' THEN k ELSE 0 END,
       CASE kind WHEN 'late' THEN {_bucket_case(buckets, "k", "label")}
            ELSE {_literal(buckets.current_label)} END,
       CASE kind WHEN 'late' THEN amount * (1 + CAST(k > 30 AS int)) ELSE 0 END,
       CASE kind WHEN 'late' THEN u END, false, u,
       CASE kind WHEN 'current' THEN 2 * amount ELSE amount END
FROM ({_PROFILE}) AS p
"""  # noqa: S608 - fixed SQL, literals from the validated bucket settings


_CONTACT_SQL = f"""
INSERT INTO account_contact (account_id, customer, contact_time, contact_event_id)
SELECT id, {_CUSTOMER}, TIMESTAMPTZ '2026-01-05 09:00:00+00',
       CAST(md5('contact:' || id) AS uuid)::text
FROM ({_PROFILE}) AS p
"""  # noqa: S608 - fixed SQL

_INSTALLMENT_SQL = f"""
INSERT INTO installment (account_id, installment_id, due_date, amount_minor)
SELECT id, 'INS-' || n, {_DUE}, amount FROM ({_PROFILE}) AS p, generate_series(1, 3) AS n
"""  # noqa: S608 - fixed SQL

_PAYMENT_SQL = f"""
INSERT INTO payment (account_id, payment_id, value_date, amount_minor, pending, applied)
SELECT id, 'PAY-' || n, {_DUE}, amount, false, true
FROM ({_PROFILE}) AS p, generate_series(1, 2) AS n WHERE n = 1 OR kind = 'current'
"""  # noqa: S608 - fixed SQL


def _bucket_history_sql(buckets: BucketSet) -> str:
    return f"""
INSERT INTO bucket_history (account_id, bucket, entered_on)
SELECT id, {_bucket_case(buckets, "k", "label")}, u + {_bucket_case(buckets, "k", "min")}
FROM ({_PROFILE}) AS p WHERE kind = 'late'
"""  # noqa: S608 - fixed SQL


def _params(portfolio: Portfolio, lo: int, hi: int, step: int = 1) -> dict[str, Any]:
    return {
        "lo": lo,
        "hi": hi,
        "step": step,
        "stride": portfolio.stride,
        "delinquent": portfolio.delinquent,
        "newly_every": NEWLY_EVERY,
        "prev": PREVIOUS,
        "products": _PRODUCTS,
        "amounts": [AMOUNTS[p] for p in _PRODUCTS],
    }


async def _load_table(engine: AsyncEngine, sql: str, portfolio: Portfolio) -> None:
    for lo in range(1, portfolio.accounts + 1, CHUNK):
        hi = min(lo + CHUNK - 1, portfolio.accounts)
        async with engine.begin() as connection:
            await connection.execute(text(sql), _params(portfolio, lo, hi))


async def load(url: str, portfolio: Portfolio, buckets: BucketSet) -> float:
    """Loads the portfolio as at PREVIOUS, vacuums and analyses; returns the seconds taken."""
    started = time.perf_counter()
    engine = create_async_engine(url, pool_size=4)
    try:
        # A table per connection: the statements are CPU-bound, and there are two cores.
        await asyncio.gather(
            _load_table(engine, _account_sql(buckets), portfolio),
            _load_table(engine, _CONTACT_SQL, portfolio),
            _load_table(engine, _INSTALLMENT_SQL, portfolio),
            _load_table(engine, _PAYMENT_SQL, portfolio),
        )
        last = portfolio.stride * portfolio.delinquent
        async with engine.begin() as connection:
            await connection.execute(
                text(_bucket_history_sql(buckets)),
                _params(portfolio, portfolio.stride, last, portfolio.stride),
            )
            await connection.execute(
                text(
                    "INSERT INTO business_day (business_date, closed_at, event_id, "
                    "accounts_aged, events_written) VALUES (:d, :at, 'bench-previous', 0, 0)"
                ),
                {"d": PREVIOUS, "at": business_day_closed(PREVIOUS).time},
            )
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def _expected_sql(buckets: BucketSet) -> str:
    # Every account past due at CLOSE is aged and delinquent after it: none pays or pauses.
    label = _bucket_case(buckets, "(CAST(:d AS date) - unpaid_since)", "label")
    return f"""
SELECT count(*), count(*) FILTER (WHERE status = 'current'),
       count(*) FILTER (WHERE bucket <> {label})
FROM account WHERE status = 'delinquent'
   OR (status <> 'closed' AND unpaid_since < CAST(:d AS date))
"""  # noqa: S608 - literals from the validated bucket settings


async def check_loaded(url: str, portfolio: Portfolio, buckets: BucketSet) -> Expected:
    """Checks the SQL key slots against Python's; returns what the close must do."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT account_id, key_slot FROM account TABLESAMPLE SYSTEM (1) LIMIT 1000")
            )
            for account_id, slot in rows:
                assert slot == key_slot(account_id), f"key slot of {account_id}"
            count = await connection.scalar(text("SELECT count(*) FROM account"))
            assert count == portfolio.accounts, f"{count} accounts loaded"
            row = (
                await connection.execute(
                    text(_expected_sql(buckets)),
                    {"d": CLOSE},
                )
            ).one()
    finally:
        await engine.dispose()
    expected = Expected(aged=row[0], started=row[1], bucket_changed=row[2])
    assert expected.aged == portfolio.delinquent, f"{expected.aged} accounts past due"
    return expected
