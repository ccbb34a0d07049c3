"""The gateway's HTTP route: ``POST [/<service>]/api/medical/<interface>`` with the
vendor's envelope, answered with HTTP 200 and a signed envelope whatever the
outcome (the vendor's clients read the result code, not the HTTP status).

The order of the checks makes "nothing written" hold for every refusal: the
envelope, the app, the signature, the interface and the business JSON are all
checked before the noise is claimed (the only write before the use case).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ebill.http.gateway.call import Call
from ebill.http.gateway.codes import GatewayError, Result, result_of
from ebill.http.gateway.envelope import (
    EnvelopeError,
    answer,
    decode_data,
    dumps,
    parse_envelope,
    signature_ok,
    vendor_key,
)
from ebill.http.gateway.fields import Reader
from ebill.http.gateway.methods import METHODS, NOT_SERVED
from ebill.http.services import RegisteredApp, Services
from engine.errors import EbillError, InvalidArgument
from ops import metrics
from storage.errors import is_retryable

__all__ = ["MAX_BODY_BYTES", "Outcome", "handle", "routes"]

log = logging.getLogger(__name__)

# 200 bills of 50 items and 100 list lines each fit well inside.
MAX_BODY_BYTES = 16 * 1024 * 1024
# How many field violations a refusal's message lists.
MAX_LISTED = 10


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    message: Any  # the business JSON (dict) on success, else a text


def _may_call(app: RegisteredApp, name: str, grpc: str, permission: str) -> bool:
    if permission and permission not in {str(p) for p in app.permissions}:
        return False
    allowed = app.methods
    return bool(
        "*" in allowed
        or f"vendor:{name}" in allowed
        or (grpc and (grpc in allowed or grpc.lstrip("/") in allowed))
    )


def _invalid_text(exc: InvalidArgument) -> str:
    shown = exc.field_errors[:MAX_LISTED] or ()
    if not shown:
        return exc.message
    text = "; ".join(f"{v.field}: {v.message}" for v in shown)
    more = len(exc.field_errors) - len(shown)
    return text + (f" (and {more} more)" if more > 0 else "")


async def _run(call: Call, body: dict[str, Any]) -> Outcome:
    method = METHODS[call.method]
    try:
        out = await method.handler(call, Reader(body))
    except GatewayError as exc:
        return Outcome(exc.result, exc.message)
    except InvalidArgument as exc:
        return Outcome(Result.INVALID, _invalid_text(exc))
    except EbillError as exc:
        text = exc.message
        if exc.retry_after_s is not None:
            text += f" (retry after {exc.retry_after_s:g}s)"
        return Outcome(result_of(exc), text)
    except Exception as exc:
        if is_retryable(exc):
            log.warning("gateway %s: %s, answered unavailable", call.method, type(exc).__name__)
            return Outcome(Result.UNAVAILABLE, "database unavailable; send the request again")
        log.exception("gateway %s failed", call.method)
        return Outcome(Result.FAILED, "internal error")
    return Outcome(Result.OK, out)


async def handle(services: Services, name: str, raw: bytes) -> tuple[dict[str, str], Result]:
    """One vendor call, start to end: the response envelope and its result code."""
    if len(raw) > MAX_BODY_BYTES:
        return answer("", "", Result.MALFORMED, "request body too large"), Result.MALFORMED
    try:
        env = parse_envelope(raw)
    except EnvelopeError as exc:
        return answer("", "", Result.MALFORMED, exc.message), Result.MALFORMED
    app = await services.identity.app(env.appid) if services.identity is not None else None
    if app is None or not app.enabled:
        text = f"appid: {env.appid[:64]} is not a registered application"
        return answer(env.appid, "", Result.UNKNOWN_APP, text), Result.UNKNOWN_APP
    key = vendor_key(app.secret)

    def refused(result: Result, text: str) -> tuple[dict[str, str], Result]:
        return answer(env.appid, key, result, text), result

    if not signature_ok(env, key):
        return refused(
            Result.BAD_SIGN, "sign: does not match (MD5 of appid, data, noise, key, version)"
        )
    if name in NOT_SERVED:
        return refused(
            Result.NOT_SERVED, f"{name} is not served by this engine: {NOT_SERVED[name]}"
        )
    method = METHODS.get(name)
    if method is None:
        return refused(Result.UNKNOWN_METHOD, f"no interface {name[:64]}")
    if not _may_call(app, name, method.grpc, method.permission):
        return refused(Result.NOT_ALLOWED, f"app {app.app_id} may not call {name}")
    try:
        body = decode_data(env.data)
    except EnvelopeError as exc:
        return refused(Result.MALFORMED, exc.message)
    assert services.identity is not None
    if not await services.identity.claim_nonce(app.app_id, env.noise, datetime.now(UTC)):
        return refused(Result.REPLAYED, f"noise: {env.noise} was used before")
    deadline = time.monotonic() + services.settings.rpc_timeout_s
    out = await _run(Call(app, services, name, deadline), body)
    return answer(env.appid, key, out.result, out.message), out.result


def routes(services: Services) -> list[BaseRoute]:
    async def endpoint(request: Request) -> Response:
        name = request.path_params["method"]
        envelope, result = await handle(services, name, await request.body())
        metrics.GATEWAY_CALLS.labels(name if name in METHODS else "other", result.value).inc()
        return Response(dumps(envelope), media_type="application/json; charset=utf-8")

    return [
        Route("/api/medical/{method}", endpoint, methods=["POST"], name="gateway"),
        # The vendor's URL carries a deployment's service name before /api/medical/.
        Route("/{service}/api/medical/{method}", endpoint, methods=["POST"], name="gateway_svc"),
    ]
