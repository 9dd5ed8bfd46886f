"""PostgreSQL advisory locks of the backbone: every namespace in one place, so none collide."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Namespaces (the first int4 of the two-key form); arbitrary but fixed.
MEMBER_LOCKS = 0x0CA5_0001  # a relay's membership (key: its member number)
SLOT_LOCKS = 0x0CA5_0002  # the key slots a relay publishes (key: the slot)
INBOX_SWEEP_LOCK = 0x0CA5_0003  # the one replica sweeping the inbox (key: 0)


async def try_advisory_lock(connection: AsyncConnection, namespace: int, key: int) -> bool:
    """Takes a session-level lock if free; it lasts until unlocked or the session ends."""
    locked = await connection.scalar(
        text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": namespace, "key": key}
    )
    return bool(locked)
