"""engine.errors to HTTP, in one place: the status code of each error code, and
the JSON body every REST and page route answers a refusal with.

The codes follow Google's HTTP mapping of the canonical gRPC codes (AIP-193),
so a REST client and a gRPC client read the same refusal the same way. The
vendor gateway does not use this: its clients read the vendor's result codes
in an HTTP 200 answer (ebill/http/gateway/codes.py).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from config.tuning import MAX_FIELD_VIOLATIONS
from engine.errors import EbillError
from storage.errors import is_retryable, translate

__all__ = ["HTTP_STATUS", "error_body", "error_response", "unexpected_response"]

log = logging.getLogger(__name__)

HTTP_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def error_body(exc: EbillError) -> dict[str, Any]:
    """``{"error": {code, status, message, field, violations, retry_after_s}}``."""
    err: dict[str, Any] = {
        "code": HTTP_STATUS.get(exc.code, 500),
        "status": exc.code,
        "message": exc.message,
    }
    if exc.field:
        err["field"] = exc.field
    violations = exc.field_errors[:MAX_FIELD_VIOLATIONS]
    if violations:
        err["violations"] = [{"field": v.field, "description": v.message} for v in violations]
    if exc.retry_after_s is not None:
        err["retry_after_s"] = exc.retry_after_s
    return {"error": err}


def error_response(exc: EbillError) -> JSONResponse:
    headers = {}
    if exc.retry_after_s is not None:
        # Retry-After takes whole seconds.
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return JSONResponse(error_body(exc), HTTP_STATUS.get(exc.code, 500), headers=headers)


async def ebill_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EbillError)
    return error_response(exc)


async def unexpected_response(request: Request, exc: Exception) -> JSONResponse:
    """A lost database connection is UNAVAILABLE (retry), as on gRPC; anything
    else is logged and answered INTERNAL without its text."""
    if is_retryable(exc):
        log.warning("%s %s: %s, answered UNAVAILABLE", request.method, request.url.path, exc)
        return error_response(translate(exc))
    log.exception("%s %s failed", request.method, request.url.path)
    return JSONResponse(
        {"error": {"code": 500, "status": "INTERNAL", "message": "internal error"}}, 500
    )
