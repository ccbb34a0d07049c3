"""Who is calling, and may they: authentication and authorization of every call.

:class:`AuthInterceptor` sits in the chain of ebill/interceptors.py inside the
error mapping: it authenticates the caller of every ``ebill.v1`` method

- a staff user by ``authorization: Bearer <session token>`` (IdentityService.Login);
- an app by its client certificate (the verified common name names the app),
  and/or by signed metadata (``x-ebill-app``, ``-timestamp``, ``-nonce``,
  ``-signature``: HMAC-SM3 with the app's secret over the method, the time, the
  nonce and the SM3 digest of the exact request bytes, engine.identity). Every
  credential presented must hold: a certificate of one app and a signature of
  another is refused, as is a stale timestamp or a nonce seen in the window;

then checks the method's rule (ebill/grpc/permissions.py) and the request's
scope: the unit and issuing point of its ``operator``, ``bill``/``bills``,
``unit_code`` and ``place_code`` fields must be in the principal's scope, and a
signed-in user is the operator of what they ask (a request naming another
person is refused; an empty name becomes theirs). Servicers reach the principal
with :func:`principal`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import Message

from ebill.grpc.permissions import Rule, rule_for
from engine.errors import PermissionDenied, Unauthenticated
from engine.identity import (
    HEADER_APP,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    Permission,
    Principal,
    Scope,
    request_signature,
)
from usecases.identity import Identity

__all__ = [
    "ANONYMOUS",
    "ENGINE",
    "AuthInterceptor",
    "acting_as",
    "authorize",
    "check_scope",
    "principal",
    "require_covers",
]

SERVICE_PREFIX = "/ebill.v1."

# Auth off (EBILL_AUTH=0, benchmarks of its cost only): every call is the engine's.
ENGINE = Principal(
    kind="app",
    name="engine",
    unit_code="*",
    scope=Scope("*", office=True),
    permissions=frozenset(Permission),
    methods=frozenset({"*"}),
)
# The caller of a public method (Login): nobody yet.
ANONYMOUS = Principal(
    kind="user", name="", unit_code="", scope=Scope("", office=False), permissions=frozenset()
)

_CURRENT: ContextVar[Principal | None] = ContextVar("ebill_principal", default=None)

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def principal() -> Principal:
    """The authenticated caller of the call being served."""
    who = _CURRENT.get()
    if who is None:
        raise Unauthenticated("no credentials")
    return who


@contextmanager
def acting_as(who: Principal) -> Iterator[Principal]:
    """Serve the block as ``who``: what :func:`principal` returns inside it. The
    interceptor uses it for a gRPC call, the REST mapping (ebill/http/rest.py)
    for the same servicers called over HTTP, after authenticating the caller
    with the same :class:`AuthInterceptor`. Restored on leaving, so a caller
    never outlives its call."""
    token = _CURRENT.set(who)
    try:
        yield who
    finally:
        _CURRENT.reset(token)


def require_covers(unit_code: str, place_code: str) -> None:
    """PERMISSION_DENIED unless the caller's scope holds (unit, place)."""
    if not principal().covers(unit_code, place_code):
        raise PermissionDenied(_outside(unit_code, place_code))


def _outside(unit_code: str, place_code: str) -> str:
    where = f"issuing point {place_code}" if place_code else "the bill office"
    return f"unit {unit_code}, {where}: outside the caller's scope"


# -- authorization ------------------------------------------------------------


def authorize(method: str, rule: Rule | None, who: Principal, request: Message) -> None:
    """The method's rule, then the request's scope (PERMISSION_DENIED)."""
    if rule is None:
        raise PermissionDenied(f"{method}: not in the permission table")
    if rule.public:
        return
    if rule.users_only and who.kind != "user":
        raise PermissionDenied(f"{method}: a signed-in person makes this call, not an app")
    if not who.may_call(method):
        raise PermissionDenied(f"{method}: not among the methods app {who.name} may call")
    if rule.permission is not None and not who.can(rule.permission):
        raise PermissionDenied(f"{method}: needs permission {rule.permission}")
    check_scope(who, request)


def _cover(who: Principal, unit_code: str, place_code: str) -> None:
    if not who.covers(unit_code, place_code):
        raise PermissionDenied(_outside(unit_code, place_code))


def _person(who: Principal, named: str, field: str) -> str:
    """The operator of a user's request is that user; an app names its own staff."""
    if who.kind != "user" or not who.name:
        return named
    if named and named != who.name:
        raise PermissionDenied(f"{field}: names {named}, but the signed-in user is {who.name}")
    return who.name


def check_scope(who: Principal, request: Message) -> None:
    """Every unit and issuing point the request names is in ``who``'s scope."""
    fields = request.DESCRIPTOR.fields_by_name
    if "operator" in fields:
        op: Any = getattr(request, "operator")  # noqa: B009  (a field, by name)
        if isinstance(op, str):  # RecordOfflineBill: who handed the paper bill out
            setattr(request, "operator", _person(who, op, "operator"))  # noqa: B010
        else:
            _cover(who, op.unit_code, op.place_code)
            op.operator = _person(who, op.operator, "operator.operator")
            for name in ("place_code", "to_place_code"):
                if name in fields and getattr(request, name):
                    _cover(who, op.unit_code, getattr(request, name))
    if "bill" in fields and request.HasField("bill"):
        bill: Any = getattr(request, "bill")  # noqa: B009
        if "place_code" in bill.DESCRIPTOR.fields_by_name:
            _cover(who, bill.unit_code, bill.place_code)
    if "bills" in fields:
        for bill in getattr(request, "bills"):  # noqa: B009
            _cover(who, bill.unit_code, bill.place_code)
    if "unit_code" in fields:
        unit = getattr(request, "unit_code")  # noqa: B009
        if unit and who.unit_code != "*" and unit != who.unit_code:
            raise PermissionDenied(f"unit {unit}: outside the caller's scope")
    if "by_bus" in fields and request.HasField("by_bus"):
        unit = request.by_bus.unit_code  # type: ignore[attr-defined]
        if who.unit_code != "*" and unit != who.unit_code:
            raise PermissionDenied(f"unit {unit}: outside the caller's scope")


# -- authentication -----------------------------------------------------------


class _Raw:
    """The request as received (its bytes, for the signature) and parsed."""

    __slots__ = ("data", "message")

    def __init__(self, data: bytes, message: Message) -> None:
        self.data = data
        self.message = message


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out[key] = value
    return out


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Authenticates and authorizes every unary call of the ``ebill.v1`` services;
    ``identity`` None turns authentication off (every caller is :data:`ENGINE`)."""

    def __init__(self, identity: Identity | None) -> None:
        self.identity = identity

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = str(handler_call_details.method)
        if handler is None or handler.unary_unary is None or not method.startswith(SERVICE_PREFIX):
            return handler
        behavior: Behavior = handler.unary_unary
        parse = handler.request_deserializer
        rule = rule_for(method)

        def raw(data: bytes) -> _Raw:
            return _Raw(data, parse(data))

        async def wrapped(request: _Raw, context: grpc.aio.ServicerContext) -> Any:
            who = await self.authenticate(method, rule, request.data, context)
            if who is not ENGINE:
                authorize(method, rule, who, request.message)
            with acting_as(who):
                return await behavior(request.message, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=raw, response_serializer=handler.response_serializer
        )

    async def authenticate(
        self, method: str, rule: Rule | None, body: bytes, context: grpc.aio.ServicerContext
    ) -> Principal:
        identity = self.identity
        if identity is None:
            return ENGINE
        if rule is not None and rule.public:
            return ANONYMOUS
        md = _metadata(context)
        bearer = md.get("authorization")
        if bearer is not None:
            scheme, _, token = bearer.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization: expected 'Bearer <session token>'")
            return await identity.principal_for_session(token.strip())
        cert_app = None
        names = (context.auth_context() or {}).get("x509_common_name")
        if names:
            cert_app = await identity.app_by_cert(names[0].decode("utf-8", "replace"))
        app_id = md.get(HEADER_APP)
        if app_id is None:
            if cert_app is None:
                raise Unauthenticated(
                    "no credentials: sign in (authorization: Bearer) or sign the request as an app"
                )
            return cert_app.principal()
        app = await identity.app(app_id)
        if app is None:
            raise Unauthenticated(f"{HEADER_APP}: unknown or disabled app")
        if cert_app is not None and cert_app.app_id != app.app_id:
            raise Unauthenticated(f"{HEADER_APP}: the client certificate is another app's")
        stamp = md.get(HEADER_TIMESTAMP, "")
        nonce = md.get(HEADER_NONCE, "")
        signature = md.get(HEADER_SIGNATURE, "")
        if not stamp.isdigit() or not 16 <= len(nonce) <= 64:
            raise Unauthenticated(
                f"{HEADER_TIMESTAMP} (Unix ms) and {HEADER_NONCE} (16-64 characters) are required"
            )
        expected = request_signature(app.secret, method, app_id, stamp, nonce, body)
        if not hmac.compare_digest(expected, signature.lower()):
            raise Unauthenticated(f"{HEADER_SIGNATURE}: does not match the request")
        try:
            at = datetime.fromtimestamp(int(stamp) / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            raise Unauthenticated(f"{HEADER_TIMESTAMP}: out of range") from None
        # Checked last: only a correctly signed request spends a nonce.
        if not await identity.claim_nonce(app_id, nonce, at):
            raise Unauthenticated(
                f"{HEADER_NONCE}/{HEADER_TIMESTAMP}: replayed, or outside the time window"
            )
        return app.principal()
