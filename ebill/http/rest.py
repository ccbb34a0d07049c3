"""REST/JSON mapping of the ebill.v1 gRPC API, for integrators who want neither
gRPC nor the vendor envelope; OpenAPI at /openapi.json (Swagger UI at /docs).

Every unary method of every ebill.v1 service is ``POST /v1/<Service>/<Method>``
with the request message as JSON (proto3 JSON mapping, the field names of the
.proto files) and the response message as JSON; a few resource paths sit beside
them (``POST /v1/bills``, ``GET /v1/bills/{bill_code}/{bill_no}``...). The call
runs through the same servicer as on gRPC (transcoding, as grpc-gateway does):
the same authentication and permission rules (ebill.grpc.auth; credentials in
HTTP headers: ``authorization: Bearer <session>``, or the app headers
``x-ebill-app``/``-timestamp``/``-nonce``/``-signature`` with the signature over
the gRPC method name and the exact HTTP body), the same request guard, the same
use cases. Refusals are HTTP status codes with a JSON body (ebill/http/errors.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response

from ebill.grpc import auth as grpc_auth
from ebill.grpc.audit import AuditServicer
from ebill.grpc.issuance import IssuanceServicer
from ebill.grpc.lifecycle import LifecycleServicer
from ebill.grpc.permissions import rule_for
from ebill.grpc.stock import StockServicer
from ebill.http.services import Services
from engine.errors import InvalidArgument
from protos.ebill.v1 import audit_pb2, issuance_pb2, lifecycle_pb2, stock_pb2
from wire.guard import check_request

__all__ = ["Authenticate", "components", "router"]

_SERVICES: tuple[ServiceDescriptor, ...] = (
    issuance_pb2.DESCRIPTOR.services_by_name["IssuanceService"],
    lifecycle_pb2.DESCRIPTOR.services_by_name["LifecycleService"],
    stock_pb2.DESCRIPTOR.services_by_name["StockService"],
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
)
MAX_BODY_BYTES = 16 * 1024 * 1024

# (principal or None) for a call: the one place the REST API authenticates.
Authenticate = Callable[[str, bytes, Request, Message], Awaitable[Any]]


class _Context:
    """What the servicers and the auth code read of a gRPC context, from HTTP."""

    def __init__(self, request: Request, deadline: float) -> None:
        self._request = request
        self._deadline = deadline

    def time_remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple((k.lower(), v) for k, v in self._request.headers.items())

    def auth_context(self) -> dict[str, list[bytes]]:
        # A client certificate's name is not read here: apps sign REST calls.
        return {}


def _authenticator(services: Services) -> Authenticate:
    """The one authentication dependency of the REST API: ebill.grpc.auth's, on
    the HTTP headers (off, as on gRPC, with EBILL_AUTH=0)."""
    interceptor = grpc_auth.AuthInterceptor(services.identity if services.settings.auth else None)

    async def authenticate(method: str, raw: bytes, request: Request, message: Message) -> Any:
        ctx: Any = _Context(request, time.monotonic())
        rule = rule_for(method)
        who = await interceptor.authenticate(method, rule, raw, ctx)
        if who is not grpc_auth.ENGINE:
            grpc_auth.authorize(method, rule, who, message)
        return who

    return authenticate


@dataclass(frozen=True, slots=True)
class _Rpc:
    full_name: str  # /ebill.v1.IssuanceService/IssueBill
    request: type[Message]
    response: Descriptor
    call: Callable[[Message, Any], Awaitable[Message]]


def _rpcs(services: Services) -> dict[str, _Rpc]:
    servicers: dict[str, Any] = {
        "IssuanceService": IssuanceServicer(services.issuance),
        "LifecycleService": LifecycleServicer(services.lifecycle, services.paper),
        "StockService": StockServicer(services.pool, services.settings, services.fiscal),
        "AuditService": AuditServicer(services.pool),
    }
    out: dict[str, _Rpc] = {}
    for svc in _SERVICES:
        for m in svc.methods:
            full = f"/{svc.full_name}/{m.name}"
            out[f"{svc.name}/{m.name}"] = _Rpc(
                full,
                message_factory.GetMessageClass(m.input_type),
                m.output_type,
                getattr(servicers[svc.name], m.name),
            )
    return out


def _json(message: Message, status: int = 200) -> Response:
    body = json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=False
    )
    return Response(body, status, media_type="application/json")


async def _transcode(
    rpc: _Rpc,
    request: Request,
    services: Services,
    authenticate: Authenticate,
    fill: Callable[[Message], None] | None = None,
) -> Response:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidArgument("body: too large", field="body")
    message = rpc.request()
    if raw.strip():
        try:
            json_format.Parse(raw, message)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"body: {str(exc)[:300]}", field="body") from None
    if fill is not None:
        fill(message)
    who = await authenticate(rpc.full_name, raw, request, message)
    check_request(message)
    ctx = _Context(request, time.monotonic() + services.settings.rpc_timeout_s)
    with grpc_auth.acting_as(who):  # servicers read the caller via principal()
        return _json(await rpc.call(message, ctx))


def router(services: Services, authenticate: Authenticate | None = None) -> APIRouter:
    """The REST routes; ``authenticate`` replaces the default (tests)."""
    auth = authenticate or _authenticator(services)
    rpcs = _rpcs(services)
    api = APIRouter(prefix="/v1")

    def add(path: str, verb: str, key: str, summary: str, fill: Any = None) -> None:
        rpc = rpcs[key]

        async def endpoint(request: Request) -> Response:
            def filled(message: Message) -> None:
                if fill is not None:
                    fill(message, request.path_params)

            return await _transcode(rpc, request, services, auth, filled)

        body = verb == "POST"
        api.add_api_route(
            path,
            endpoint,
            methods=[verb],
            summary=summary,
            operation_id=verb.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path),
            tags=[key.split("/")[0]],
            openapi_extra={
                # The gRPC method behind the route: an app signs its name (and
                # the coverage test finds the route's permission by it).
                "x-ebill-grpc-method": rpc.full_name,
                **(
                    {
                        "requestBody": {
                            "content": {
                                "application/json": {"schema": _ref(rpc.request.DESCRIPTOR)}
                            }
                        }
                    }
                    if body
                    else {}
                ),
                "responses": {
                    "200": {"content": {"application/json": {"schema": _ref(rpc.response)}}},
                    "default": {
                        "description": "refused: {error: {code, status, message, field, ...}}"
                    },
                },
            },
        )

    def by_number(message: Any, params: dict[str, str]) -> None:
        message.by_number.bill_code = params["bill_code"]
        message.by_number.bill_no = params["bill_no"]

    def by_bus(message: Any, params: dict[str, str]) -> None:
        message.by_bus.unit_code = params["unit_code"]
        message.by_bus.bus_no = params["bus_no"]

    # Resource paths for the calls a new integrator starts with.
    add("/bills", "POST", "IssuanceService/IssueBill", "Issue one bill")
    add("/bills:batch", "POST", "IssuanceService/IssueBatch", "Issue up to 200 bills")
    add("/bills/{bill_code}/{bill_no}", "GET", "IssuanceService/GetBill", "A bill", by_number)
    add(
        "/bills/{bill_code}/{bill_no}/status",
        "GET",
        "IssuanceService/GetBillStatus",
        "A bill's status",
        by_number,
    )
    add(
        "/units/{unit_code}/serials/{bus_no}",
        "GET",
        "IssuanceService/GetBill",
        "The bill of a serial (bus_no)",
        by_bus,
    )
    # Every method, RPC style.
    for key in rpcs:
        add(f"/{key}", "POST", key, f"{key.split('/')[1]} (gRPC ebill.v1.{key})")
    return api


def _ref(desc: Any) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{desc.full_name}"}


_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32"},
    # proto3 JSON writes 64-bit integers as strings.
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}


def _field_schema(f: FieldDescriptor, todo: list[Descriptor]) -> dict[str, Any]:
    if f.message_type is not None:
        todo.append(f.message_type)
        one: dict[str, Any] = _ref(f.message_type)
    elif f.enum_type is not None:
        one = {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    else:
        one = dict(_SCALARS.get(f.type, {"type": "string"}))
    # protobuf 6 has is_repeated; older versions only label.
    repeated = getattr(f, "is_repeated", None)
    is_list = (
        repeated
        if isinstance(repeated, bool)
        else getattr(f, "label", 0) == FieldDescriptor.LABEL_REPEATED
    )
    return {"type": "array", "items": one} if is_list else one


def components() -> dict[str, Any]:
    """JSON Schemas of every message the REST API reads or writes, from the
    .proto descriptors (field names as in the .proto files)."""
    todo: list[Descriptor] = []
    for svc in _SERVICES:
        for m in svc.methods:
            todo += [m.input_type, m.output_type]
    out: dict[str, Any] = {}
    while todo:
        desc = todo.pop()
        if desc.full_name in out:
            continue
        out[desc.full_name] = {
            "type": "object",
            "properties": {f.name: _field_schema(f, todo) for f in desc.fields},
        }
    return out
