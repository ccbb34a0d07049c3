"""Coverage that cannot drift (issue 12, item 4): every method of every ebill.v1
service, found by walking the service descriptors, is in the permission table;
called without credentials (or with a bad signature) it answers UNAUTHENTICATED;
called by a principal without its permission, or naming a unit or issuing point
outside the caller's scope, PERMISSION_DENIED; and none of those calls changes
a row. A new RPC fails here until the table says who may call it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
import pytest_asyncio

from clients.credentials import AppCredentials, Credentials
from ebill.grpc.permissions import RULES
from engine.identity import Permission
from ops.stack import Stack
from tests.e2e.auth_support import (
    call,
    full_name,
    make_app,
    make_user,
    methods,
    scoped_request,
    state,
)

pytestmark = pytest.mark.slow

ALL = list(Permission)
# Methods whose requests name no unit or issuing point: what they touch is
# looked up by id or is the engine's own (backlog, log), so only the permission
# guards them; identity management checks the target's unit in the use case.
UNSCOPED = {
    "GetBacklog",
    "GetTreeHead",
    "GetInclusionProof",
    "GetConsistencyProof",
    "Login",
    "Logout",
    "WhoAmI",
    "SetUserEnabled",
    "ResetPassword",
    "EnrolTotp",
    "SetRole",
    "RotateAppSecret",
    "SetAppEnabled",
    "SetAppAccess",
}


@dataclass
class Principals:
    none_app: AppCredentials  # no permission at all
    point_app: AppCredentials  # every app permission, issuing point 001 only
    point_user: Credentials  # every permission, issuing point 001 only
    forged: AppCredentials  # the demo app's id with a wrong secret


@pytest_asyncio.fixture(scope="module")
async def principals(stack: Stack) -> AsyncIterator[Principals]:
    admin = await stack.login("admin")
    apps = [p for p in ALL if p not in (Permission.IDENTITY_MANAGE, Permission.KEYS_MANAGE)]
    yield Principals(
        none_app=await make_app(stack, admin, "cov-none", []),
        point_app=await make_app(stack, admin, "cov-point", apps, places=["001"]),
        point_user=await make_user(stack, admin, "cov-point-user", ALL, places=["001"]),
        forged=AppCredentials(stack.demo.app_id, b"x" * 32),
    )


def test_every_method_is_in_the_permission_table() -> None:
    missing = [full_name(s, m) for s, m in methods() if full_name(s, m) not in RULES]
    assert not missing, f"methods without a rule in ebill/grpc/permissions.py: {missing}"
    # And the table names no method that does not exist (a renamed RPC).
    known = {full_name(s, m) for s, m in methods()}
    assert {k for k in RULES if k.startswith("/")} <= known


def test_every_unscoped_method_is_known() -> None:
    unscoped = {m.name for _, m in methods() if not scoped_request(m)[1]}
    assert unscoped == UNSCOPED, "a new method without scope fields: decide and list it"


async def test_every_method_refuses_and_changes_nothing(
    stack: Stack, pool: asyncpg.Pool, principals: Principals
) -> None:
    before = await state(pool)
    failures: list[str] = []

    def expect(what: str, got: grpc.StatusCode, want: grpc.StatusCode) -> None:
        if got != want:
            failures.append(f"{what}: {got.name}, expected {want.name}")

    async with (
        stack.channel(creds=False) as anonymous,
        stack.channel(creds=principals.forged) as forged,
        stack.channel(creds=principals.none_app) as none_app,
        stack.channel(creds=principals.point_app) as point_app,
        stack.channel(creds=principals.point_user) as point_user,
    ):
        for service, method in methods():
            name = full_name(service, method)
            rule = RULES[name]
            request, scoped = scoped_request(method)
            unauth = grpc.StatusCode.UNAUTHENTICATED
            expect(f"{name} anonymous", await call(anonymous, service, method, request), unauth)
            if rule.public:
                continue
            expect(f"{name} forged", await call(forged, service, method, request), unauth)
            if rule.permission is not None or rule.users_only:
                expect(
                    f"{name} without permission",
                    await call(none_app, service, method, request),
                    grpc.StatusCode.PERMISSION_DENIED,
                )
            if scoped:
                expect(
                    f"{name} user out of scope",
                    await call(point_user, service, method, request),
                    grpc.StatusCode.PERMISSION_DENIED,
                )
                expect(
                    f"{name} app out of scope",
                    await call(point_app, service, method, request),
                    grpc.StatusCode.PERMISSION_DENIED,
                )
    assert not failures, "\n".join(failures)
    assert await state(pool) == before, "a refused call changed state"
