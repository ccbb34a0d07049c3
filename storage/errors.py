"""Map database failures onto the engine's error tree by SQLSTATE class, never by
message text (the asyncpg way)."""

from __future__ import annotations

import asyncpg

from engine.errors import EbillError, Internal, Unavailable

__all__ = ["is_retryable", "translate"]

# 08 connection exception, 53 insufficient resources, 57 operator intervention
# (admin shutdown, crash recovery), 58 system error: the database is away.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
# 40 transaction rollback: serialization failure or deadlock; safe to retry.
_RETRY_CLASSES = ("40",)


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def is_retryable(exc: BaseException) -> bool:
    state = _sqlstate(exc)
    if state[:2] in _RETRY_CLASSES + _UNAVAILABLE_CLASSES:
        return True
    return isinstance(exc, (ConnectionError, OSError, asyncpg.InterfaceError))


def translate(exc: BaseException) -> EbillError:
    """The engine error a caller should see for a database failure."""
    if isinstance(exc, EbillError):
        return exc
    if is_retryable(exc):
        return Unavailable(f"database unavailable: {type(exc).__name__}")
    return Internal(f"database error {_sqlstate(exc) or type(exc).__name__}")
