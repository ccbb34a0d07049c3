"""What every gRPC servicer of the engine shares: errors to status codes, metrics."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from actors.stages import outcome_error
from ebill.batcher import Outcome
from engine.errors import EbillError
from ops import metrics

__all__ = ["final", "observed", "prefixed"]

R = TypeVar("R")


def observed(
    method: Callable[..., Awaitable[R]],
) -> Callable[..., Awaitable[R]]:
    """Count calls by final status code and time them."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        started = time.perf_counter()
        code = "OK"
        try:
            return await method(self, request, context)
        except EbillError as exc:
            code = exc.code
            await context.abort(
                grpc.StatusCode[exc.code],
                exc.message,
                trailing_metadata=(("ebill-field", exc.field),) if exc.field else (),
            )
            raise
        except Exception:
            code = context.code().name if context.code() else "INTERNAL"
            raise
        finally:
            metrics.RPCS.labels(method.__name__, code).inc()
            metrics.RPC_LATENCY.labels(method.__name__).observe(time.perf_counter() - started)

    return wrapper


def prefixed(err: EbillError, prefix: str) -> EbillError:
    if not err.field:
        return err
    field = f"{prefix}.{err.field}"
    message = err.message
    if message.startswith(err.field + ":"):
        message = f"{prefix}.{message}"
    return type(err)(message, field=field)


def final(outcome: Outcome) -> EbillError | None:
    if isinstance(outcome, EbillError):
        return outcome
    return outcome_error(outcome)
