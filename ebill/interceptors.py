"""What every call of the engine's own services goes through, in one place instead
of a decorator on each method: metrics, logging, and the mapping of the error tree
(engine.errors) to gRPC status codes. Authentication comes here next.

Interceptors wrap the unary-unary methods of the ``ebill.v1`` services only:
health and reflection are not the engine's API and were never counted. The
order given to the server is outermost first: metrics, logging, errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from engine.errors import EbillError
from ops import metrics

__all__ = [
    "SERVICE_PREFIX",
    "ErrorInterceptor",
    "LoggingInterceptor",
    "MetricsInterceptor",
    "interceptors",
]

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/ebill.v1."

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def method_name(details: grpc.HandlerCallDetails) -> str:
    """The RPC's name, the metrics' ``method`` label: /ebill.v1.IssuanceService/IssueBill."""
    return str(details.method).rsplit("/", 1)[-1]


async def abort(context: grpc.aio.ServicerContext, exc: EbillError) -> None:
    """End the call with the error's code and message; the field it names, if any,
    travels as ``ebill-field`` trailing metadata. Raises (grpc's AbortError)."""
    await context.abort(
        grpc.StatusCode[exc.code],
        exc.message,
        trailing_metadata=(("ebill-field", exc.field),) if exc.field else (),
    )


def code_of(context: grpc.aio.ServicerContext) -> str:
    """The status code a failed call ended with (set by an abort), else INTERNAL."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "INTERNAL"


class _UnaryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Wraps the behaviour of the engine's unary-unary methods with ``around``."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.unary_unary is None
            or not str(handler_call_details.method).startswith(SERVICE_PREFIX)
        ):
            return handler
        behavior: Behavior = handler.unary_unary
        name = method_name(handler_call_details)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await self.around(name, behavior, request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        raise NotImplementedError


class MetricsInterceptor(_UnaryInterceptor):
    """ebill_rpc_total by method and final status code; ebill_rpc_seconds by method."""

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            return await behavior(request, context)
        except Exception:
            code = code_of(context)
            raise
        finally:
            metrics.RPCS.labels(method, code).inc()
            metrics.RPC_LATENCY.labels(method).observe(time.perf_counter() - started)


class LoggingInterceptor(_UnaryInterceptor):
    """One debug line per call; a traceback for calls that failed unexpectedly."""

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        started = time.perf_counter()
        try:
            out = await behavior(request, context)
        except Exception:
            if context.code() is None:  # not an abort: a bug or a dependency's failure
                log.exception("%s failed", method)
            else:  # a refusal from the error tree is the API working, not a fault
                log.debug("%s: %s", method, code_of(context))
            raise
        log.debug("%s: OK in %.1f ms", method, (time.perf_counter() - started) * 1000)
        return out


class ErrorInterceptor(_UnaryInterceptor):
    """engine.errors to gRPC: status code, message, and the field as trailing metadata."""

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        try:
            return await behavior(request, context)
        except EbillError as exc:
            await abort(context, exc)
            raise


def interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The engine server's interceptors, outermost first."""
    return [MetricsInterceptor(), LoggingInterceptor(), ErrorInterceptor()]
