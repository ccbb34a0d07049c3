"""Helpers of the authentication end-to-end tests: principals made through
IdentityService, raw calls of any method with chosen metadata, and the row
counts a refused call must leave as they were."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from clients.credentials import AppCredentials, Credentials, SessionCredentials
from engine.identity import Permission, totp
from ops.stack import Stack
from protos.ebill.v1 import (
    audit_pb2,
    identity_pb2,
    identity_pb2_grpc,
    issuance_pb2,
    lifecycle_pb2,
    stock_pb2,
)
from tests.refusal import snapshot
from usecases import demo

__all__ = [
    "OTHER_UNIT",
    "call",
    "full_name",
    "make_app",
    "make_user",
    "methods",
    "scoped_request",
    "state",
]

OTHER_UNIT = "999999999"
PASSWORD = "Coverage-pass-42"


def methods() -> Iterator[tuple[ServiceDescriptor, MethodDescriptor]]:
    """Every method of every ebill.v1 service."""
    for module in (issuance_pb2, lifecycle_pb2, stock_pb2, audit_pb2, identity_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield service, method


def full_name(service: ServiceDescriptor, method: MethodDescriptor) -> str:
    return f"/{service.full_name}/{method.name}"


def scoped_request(method: MethodDescriptor, place: str = "002") -> tuple[Message, bool]:
    """A request of ``method`` naming issuing point ``place`` of the demo unit, or
    another unit, in every field that carries scope; True when it has one."""
    req = GetMessageClass(method.input_type)()
    fields = req.DESCRIPTOR.fields_by_name
    scoped = False
    r: Any = req
    if "operator" in fields and fields["operator"].message_type is not None:
        r.operator.unit_code, r.operator.place_code = demo.UNIT_CODE, place
        scoped = True
    bill = fields.get("bill")
    if bill is not None and bill.message_type and "place_code" in bill.message_type.fields_by_name:
        r.bill.unit_code, r.bill.place_code = demo.UNIT_CODE, place
        scoped = True
    if "bills" in fields:
        b = r.bills.add()
        b.unit_code, b.place_code = demo.UNIT_CODE, place
        scoped = True
    if "unit_code" in fields and fields["unit_code"].type == fields["unit_code"].TYPE_STRING:
        r.unit_code = OTHER_UNIT
        scoped = True
    if "by_bus" in fields:
        r.by_bus.unit_code, r.by_bus.bus_no = OTHER_UNIT, "X1"
        scoped = True
    return req, scoped


async def call(
    ch: grpc.aio.Channel,
    service: ServiceDescriptor,
    method: MethodDescriptor,
    request: Message,
    metadata: Sequence[tuple[str, str]] = (),
) -> grpc.StatusCode:
    """The status code one call ends with."""
    out = GetMessageClass(method.output_type)
    stub = ch.unary_unary(
        full_name(service, method),
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=out.FromString,
    )
    try:
        await stub(request, metadata=tuple(metadata) or None, timeout=30)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def state(pool: asyncpg.Pool) -> tuple[Any, ...]:
    """What a refused call must not change: the stock and bill state of
    tests.refusal, identity's tables and the transparency log's entries."""
    counts = [
        await pool.fetchval(f"SELECT count(*) FROM {table}")
        for table in (
            "users",
            "roles",
            "role_permissions",
            "user_roles",
            "apps",
            "sessions",
            "login_attempts",
            "log_entries",
            "offline_bills",
            "opening_stock",
            "write_offs",
            "destruction_requests",
            "auto_distribution",
        )
    ]
    return (*await snapshot(pool), *counts)


async def make_user(
    stack: Stack,
    admin: Credentials,
    username: str,
    permissions: Sequence[Permission],
    *,
    places: Sequence[str] = (),
) -> SessionCredentials:
    """A user with one role of ``permissions`` over ``places`` (none: the office),
    made by the signed-in ``admin`` through IdentityService; signed in."""
    async with stack.channel(creds=admin) as ch:
        ident = identity_pb2_grpc.IdentityServiceStub(ch)
        role = f"role-{username}"
        await ident.SetRole(identity_pb2.SetRoleRequest(name=role, permissions=permissions))
        await ident.CreateUser(
            identity_pb2.CreateUserRequest(
                username=username, password=PASSWORD, unit_code=demo.UNIT_CODE
            )
        )
        await ident.AssignRole(
            identity_pb2.AssignRoleRequest(
                username=username,
                role=role,
                unit_code=demo.UNIT_CODE,
                office=not places,
                places=places,
            )
        )
        seed = (await ident.EnrolTotp(identity_pb2.UserRef(username=username))).secret
    async with stack.channel(creds=False) as ch:
        resp = await identity_pb2_grpc.IdentityServiceStub(ch).Login(
            identity_pb2.LoginRequest(
                username=username, password=PASSWORD, totp=totp(seed, time.time())
            )
        )
    return SessionCredentials(resp.token)


async def make_app(
    stack: Stack,
    admin: Credentials,
    app_id: str,
    permissions: Sequence[Permission],
    *,
    places: Sequence[str] = (),
    cert_cn: str = "",
) -> AppCredentials:
    async with stack.channel(creds=admin) as ch:
        resp = await identity_pb2_grpc.IdentityServiceStub(ch).RegisterApp(
            identity_pb2.RegisterAppRequest(
                app_id=app_id,
                unit_code=demo.UNIT_CODE,
                places=places,
                permissions=permissions,
                cert_cn=cert_cn,
            )
        )
    return AppCredentials(app_id, resp.secret)
