"""Async SQLAlchemy 2 engine and session helpers shared by every service."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from cascade.shared.settings import DatabaseSettings

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Deterministic constraint names, so that Alembic autogenerate and hand-written
# migrations agree and a constraint can be dropped by name in any database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    """Returns a MetaData that names constraints by the project's convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    """Returns an async engine with a bounded pool and bounded waits."""
    return create_async_engine(
        settings.url.get_secret_value(),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=True,
        # Bound values are debtors' data: never in an error message or a log line.
        hide_parameters=True,
        connect_args={"timeout": settings.connect_timeout_s},
    )


def make_probe_engine(settings: DatabaseSettings) -> AsyncEngine:
    """Returns an engine without a pool, for a consumer's rare questions to the database
    (does it answer, does an attempt wait on a lock): each gets a connection of its own,
    however busy the service's pool is."""
    return create_async_engine(
        settings.url.get_secret_value(),
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={"timeout": settings.connect_timeout_s},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Returns a session factory whose objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yields a session inside one transaction: committed on success, rolled back on error."""
    async with sessions() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    """Raises unless the database answers a trivial query."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def validate_identifier(name: str) -> str:
    """Return `name` if it is a safe lower-case SQL identifier; raise ValueError otherwise."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain lower-case identifier: {name!r}")
    return name


def asyncpg_url(url: str) -> str:
    """Return a PostgreSQL URL with SQLAlchemy's asyncpg driver (postgresql+asyncpg://)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def database_url(server_url: str, database: str) -> str:
    """Return the asyncpg URL of `database` on the server of `server_url`."""
    url = make_url(asyncpg_url(server_url)).set(database=validate_identifier(database))
    return url.render_as_string(hide_password=False)


async def _execute_autocommit(server_url: str, sql: str, **params: str) -> object:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    engine = create_async_engine(
        asyncpg_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


async def create_database(server_url: str, name: str) -> None:
    """Create database `name` on the server of `server_url` unless it exists."""
    validate_identifier(name)
    query = "SELECT 1 FROM pg_database WHERE datname = :name"
    if await _execute_autocommit(server_url, query, name=name) is None:
        # CREATE DATABASE takes no bind parameters; `name` is a validated identifier.
        await _execute_autocommit(server_url, f'CREATE DATABASE "{name}"')


async def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` on the server of `server_url`, disconnecting its sessions."""
    validate_identifier(name)
    await _execute_autocommit(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
