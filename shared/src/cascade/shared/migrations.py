"""Alembic per service: one async `env.py` body and a programmatic upgrade.

Each service keeps its migrations inside its package (`cascade.<service>/migrations`)
so they ship with the wheel and the container image.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.resources import files

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(service_package: str, database_url: str) -> Config:
    """Returns an Alembic config for `cascade.<service>` pointed at `database_url`."""
    config = Config()
    config.set_main_option("script_location", f"{service_package}:migrations")
    config.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(rev)s_%%(slug)s")
    # Alembic's ini interpolation treats % specially; URLs may contain %-escapes.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(service_package: str, database_url: str, revision: str = "head") -> None:
    """Applies a service's migrations up to `revision` (blocking; call in a thread)."""
    command.upgrade(alembic_config(service_package, database_url), revision)


def downgrade(service_package: str, database_url: str, revision: str = "base") -> None:
    """Reverts a service's migrations down to `revision` (blocking; call in a thread)."""
    command.downgrade(alembic_config(service_package, database_url), revision)


def head_revision(service_package: str) -> str:
    """Returns the newest revision id a service's migrations define."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(files(service_package) / "migrations"))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError(f"{service_package} has no migrations")
    return head


def run_env(target_metadata: MetaData, fallback_url: Callable[[], str]) -> None:
    """Runs a service's `env.py`; the URL is the caller's, else the service settings'."""
    url = context.config.get_main_option("sqlalchemy.url") or fallback_url()
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata))


async def _run_online(url: str, target_metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate, target_metadata)
    finally:
        await engine.dispose()


def _migrate(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        # Replicas start together and each runs `cascade migrate`; one at a time.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('cascade-migrations'))"))
        context.run_migrations()
