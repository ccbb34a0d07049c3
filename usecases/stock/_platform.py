"""How the stock use cases word a failed fiscal-platform call.

clients.fiscal raises the engine error matching the platform's status code. The
StockService has always answered with two: UNAVAILABLE when the platform is away
or too slow (try again), FAILED_PRECONDITION when it refused; this keeps that
API, naming what was being done.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from engine.errors import DeadlineExceeded, EbillError, FailedPrecondition, Unavailable

__all__ = ["platform"]

T = TypeVar("T")


async def platform(what: str, call: Awaitable[T]) -> T:
    """Await a FiscalClient call made for ``what`` ("the return", ...)."""
    try:
        return await call
    except (Unavailable, DeadlineExceeded) as exc:
        raise Unavailable(f"fiscal platform unavailable for {what}: try again") from exc
    except EbillError as exc:
        # The platform's own words when the client kept them (the gRPC details).
        details = getattr(exc.__cause__, "details", None)
        reason = details() if callable(details) else exc.message
        raise FailedPrecondition(f"fiscal platform refused {what}: {reason}") from exc
