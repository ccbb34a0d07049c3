"""IdentityService over gRPC: sign-in, and users, roles and apps (usecases.identity).

The caller is the authenticated principal (ebill.grpc.auth); the permission
table already required identity.manage from a signed-in user for management.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc

from ebill.grpc.auth import principal
from engine.errors import InvalidArgument, Unauthenticated
from engine.identity import Permission, Scope
from protos.ebill.v1 import identity_pb2, identity_pb2_grpc
from usecases.identity import Identity
from usecases.identity.manage import AppSpec, IdentityAdmin, otpauth_uri

__all__ = ["IdentityServicer"]

_EMPTY = identity_pb2.IdentityEmpty()


def _permissions(values: list[str], field: str) -> list[str]:
    known = {str(p) for p in Permission}
    for i, v in enumerate(values):
        if v not in known:
            raise InvalidArgument(f"{field}[{i}]: unknown permission {v!r}", field=f"{field}[{i}]")
    return values


def _methods(values: list[str]) -> list[str]:
    return [v for v in values if v] or ["*"]


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self._admin = IdentityAdmin(identity)

    async def Login(
        self, request: identity_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.LoginResponse:
        if not request.username or not request.password:
            raise Unauthenticated("username and password are required")
        token = await self._identity.login(request.username, request.password, request.totp)
        expires = datetime.now(UTC) + timedelta(seconds=self._identity.policy.session_ttl_s)
        return identity_pb2.LoginResponse(token=token, expires_at=expires.isoformat())

    async def Logout(
        self, request: identity_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                await self._identity.logout(value.partition(" ")[2].strip())
        return _EMPTY

    async def WhoAmI(
        self, request: identity_pb2.IdentityEmpty, context: grpc.aio.ServicerContext
    ) -> identity_pb2.PrincipalInfo:
        who = principal()
        return identity_pb2.PrincipalInfo(
            kind=who.kind,
            name=who.name,
            unit_code=who.unit_code,
            office=who.scope.office,
            places=sorted(who.scope.places),
            permissions=sorted(who.permissions),
            roles=list(who.roles),
        )

    # -- users and roles -------------------------------------------------------

    async def CreateUser(
        self, request: identity_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        await self._admin.create_user(
            principal(),
            username=request.username,
            password=request.password,
            unit_code=request.unit_code or principal().unit_code,
            display_name=request.display_name,
        )
        return _EMPTY

    async def SetUserEnabled(
        self, request: identity_pb2.SetEnabledRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        await self._admin.set_user_enabled(principal(), request.name, request.enabled)
        return _EMPTY

    async def ResetPassword(
        self, request: identity_pb2.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        await self._admin.reset_password(principal(), request.username, request.password)
        return _EMPTY

    async def EnrolTotp(
        self, request: identity_pb2.UserRef, context: grpc.aio.ServicerContext
    ) -> identity_pb2.TotpEnrolment:
        seed = await self._admin.enrol_totp(principal(), request.username)
        return identity_pb2.TotpEnrolment(
            secret=seed, otpauth_uri=otpauth_uri(request.username, seed)
        )

    async def SetRole(
        self, request: identity_pb2.SetRoleRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        await self._admin.create_role(
            principal(),
            request.name,
            _permissions(list(request.permissions), "permissions"),
            request.description,
        )
        return _EMPTY

    async def AssignRole(
        self, request: identity_pb2.AssignRoleRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        unit = request.unit_code or principal().unit_code
        scope = Scope(unit, office=request.office, places=frozenset(request.places))
        await self._admin.assign_role(principal(), request.username, request.role, scope)
        return _EMPTY

    # -- apps ------------------------------------------------------------------

    async def RegisterApp(
        self, request: identity_pb2.RegisterAppRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.AppSecret:
        spec = AppSpec(
            app_id=request.app_id,
            unit_code=request.unit_code or principal().unit_code,
            places=request.places,
            methods=_methods(list(request.methods)),
            permissions=_permissions(list(request.permissions), "permissions"),
            cert_cn=request.cert_cn,
            description=request.description,
        )
        secret = await self._admin.register_app(principal(), spec)
        return identity_pb2.AppSecret(app_id=spec.app_id, secret=secret, secret_version=1)

    async def RotateAppSecret(
        self, request: identity_pb2.AppRef, context: grpc.aio.ServicerContext
    ) -> identity_pb2.AppSecret:
        secret = await self._admin.rotate_secret(principal(), request.app_id)
        app = await self._identity.app(request.app_id)
        return identity_pb2.AppSecret(
            app_id=request.app_id, secret=secret, secret_version=app.secret_version if app else 0
        )

    async def SetAppEnabled(
        self, request: identity_pb2.SetEnabledRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        await self._admin.set_app_enabled(principal(), request.name, request.enabled)
        return _EMPTY

    async def SetAppAccess(
        self, request: identity_pb2.SetAppAccessRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityEmpty:
        await self._admin.set_app_access(
            principal(),
            request.app_id,
            places=request.places,
            methods=_methods(list(request.methods)),
            permissions=(
                _permissions(list(request.permissions), "permissions")
                if request.permissions
                else None
            ),
        )
        return _EMPTY
