"""Telling a transient failure (retry, never skip) from a bad event (dead-letter)."""

from __future__ import annotations

from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57 operator
# intervention (e.g. admin shutdown); and serialization failure, deadlock, and a lock
# another session holds past `lock_timeout` (55P03: the other session's doing, as a lock
# wait that the batch timeout cuts is, messaging.lock_watch).
_TRANSIENT_CLASSES = frozenset({"08", "53", "57"})
_TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03"})


def _sqlstate(error: DBAPIError) -> str | None:
    original = error.orig
    for candidate in (original, getattr(original, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def is_unique_violation(error: DBAPIError) -> bool:
    """Tells whether a statement failed on a unique index (SQLSTATE 23505)."""
    return _sqlstate(error) == "23505"


def is_transient(error: BaseException) -> bool:
    """Tells whether retrying later can succeed: a database or broker unavailable."""
    if isinstance(error, ConnectionError | TimeoutError | PoolTimeoutError):
        return True
    if isinstance(error, OSError):
        return True
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", False)) or "Timeout" in type(error).__name__
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        state = _sqlstate(error)
        if state is None:
            # No SQLSTATE: the driver lost the connection before the server answered, or
            # the statement itself is wrong (a programming error: not worth a retry).
            return isinstance(error, InterfaceError | OperationalError)
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    return False
