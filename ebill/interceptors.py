"""What every call of the engine's own services goes through, in one place instead
of a decorator on each method: metrics, logging, the mapping of the error tree
(engine.errors) to gRPC status codes, and authentication (ebill.grpc.auth).

Interceptors wrap the unary-unary methods of the ``ebill.v1`` services only:
health and reflection are not the engine's API and were never counted. The
order given to the server is outermost first: metrics, logging, errors,
authentication and authorization (so its refusals are counted, logged and
mapped like any other), and the request guard (wire.guard) innermost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from config.tuning import MAX_ERROR_MESSAGE_CHARS, MAX_FIELD_VIOLATIONS
from ebill.grpc.auth import AuthInterceptor
from engine.errors import EbillError
from ops import metrics
from storage.errors import is_retryable, translate
from wire.guard import check_request

__all__ = [
    "SERVICE_PREFIX",
    "STATUS_DETAILS_KEY",
    "ErrorInterceptor",
    "LoggingInterceptor",
    "MetricsInterceptor",
    "RequestGuardInterceptor",
    "interceptors",
    "rich_status",
]

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/ebill.v1."
# Where gRPC carries a google.rpc.Status with details (what grpcio-status's
# rpc_status.from_call reads on the client).
STATUS_DETAILS_KEY = "grpc-status-details-bin"

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def method_name(details: grpc.HandlerCallDetails) -> str:
    """The RPC's name, the metrics' ``method`` label: /ebill.v1.IssuanceService/IssueBill."""
    return str(details.method).rsplit("/", 1)[-1]


def _short(text: str, limit: int) -> str:
    # A last bound on what travels in trailers: every message is built to be short
    # (engine.validation.quote), this keeps it so whatever a message grows into.
    # ASCII "...": a text header (ebill-field) refuses anything else.
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rich_status(exc: EbillError) -> status_pb2.Status:
    """The google.rpc.Status for an engine error: BadRequest with every field
    violation (at most MAX_FIELD_VIOLATIONS, the count of the rest in the last), and
    RetryInfo when the error says when to retry."""
    status = status_pb2.Status(
        code=grpc.StatusCode[exc.code].value[0],
        message=_short(exc.message, MAX_ERROR_MESSAGE_CHARS),
    )
    violations = exc.field_errors
    if violations:
        shown = violations[:MAX_FIELD_VIOLATIONS]
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_short(v.field, MAX_ERROR_MESSAGE_CHARS),
                    description=_short(v.message, MAX_ERROR_MESSAGE_CHARS),
                )
                for v in shown
            ]
        )
        if len(violations) > len(shown):
            bad.field_violations[
                -1
            ].description += f" (and {len(violations) - len(shown)} more violations not listed)"
        detail = any_pb2.Any()
        detail.Pack(bad)
        status.details.append(detail)
    if exc.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after_s * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    return status


async def abort(context: grpc.aio.ServicerContext, exc: EbillError) -> None:
    """End the call with the error's code and message; the field it names, if any,
    travels as ``ebill-field`` trailing metadata, and every field violation and
    the retry delay as google.rpc.Status details. Raises (grpc's AbortError)."""
    status = rich_status(exc)
    metadata: tuple[tuple[str, str | bytes], ...] = (
        (STATUS_DETAILS_KEY, status.SerializeToString()),
    )
    if exc.field:
        metadata = (("ebill-field", _short(exc.field, MAX_ERROR_MESSAGE_CHARS)), *metadata)
    await context.abort(grpc.StatusCode[exc.code], status.message, trailing_metadata=metadata)


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
    """engine.errors to gRPC: status code, message, and the field as trailing metadata.

    A lost database connection can surface as a raw ConnectionResetError or an
    asyncpg connection error from any use case that talks to storage directly
    (found by the chaos run: RedFlush, Refund and Distribute answered UNKNOWN).
    Those become UNAVAILABLE with a retry hint, by the same SQLSTATE-class rule
    the pipeline uses (storage.errors), so a HIS knows to resend the same key.
    """

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        try:
            return await behavior(request, context)
        except EbillError as exc:
            await abort(context, exc)
            raise
        except Exception as exc:
            if not is_retryable(exc):
                raise
            log.warning("%s: %s, answered UNAVAILABLE", method, type(exc).__name__)
            await abort(context, translate(exc))
            raise


class RequestGuardInterceptor(_UnaryInterceptor):
    """Every string of the request bounded, shaped and free of control characters
    (wire.guard) before a servicer reads it: a refused call writes nothing, and
    no request field, old or added later, escapes the check."""

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        check_request(request)
        return await behavior(request, context)


def interceptors(auth: AuthInterceptor) -> list[grpc.aio.ServerInterceptor]:
    """The engine server's interceptors, outermost first. ``auth`` is required so
    that no server is assembled without deciding about authentication
    (``AuthInterceptor(None)``: off, for benchmarks and unit tests)."""
    return [
        MetricsInterceptor(),
        LoggingInterceptor(),
        ErrorInterceptor(),
        auth,
        RequestGuardInterceptor(),
    ]
