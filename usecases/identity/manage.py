"""Management of users, roles and apps, each change with its log leaf.

The actor is the authenticated principal (or ``SYSTEM`` for the offline
bootstrap of ebill/cli/identity.py). An actor manages its own unit only. Every
change commits together with a transparency-log entry naming the actor; no
entry's content holds a secret, a password or a hash.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Iterable

from engine.errors import InvalidArgument, NotFound, PermissionDenied
from engine.identity import (
    Permission,
    Principal,
    Role,
    Scope,
    User,
    check_name,
    check_password,
)
from engine.translog import LogEntry
from storage import identity as store
from storage.translog import append_entries
from usecases.identity import Identity, app_aad, hash_password, log_entry, totp_aad

__all__ = ["SYSTEM", "AppSpec", "IdentityAdmin", "otpauth_uri"]

# The actor of offline bootstrap (ebill identity create-admin): it has every
# permission in every unit, and exists only in the CLI process.
SYSTEM = Principal(
    kind="user",
    name="system",
    unit_code="*",
    scope=Scope("*", office=True),
    permissions=frozenset(Permission),
)

SECRET_BYTES = 32
TOTP_SECRET_BYTES = 20


def otpauth_uri(username: str, secret: bytes, issuer: str = "ebill") -> str:
    """What an authenticator app scans (Key Uri Format): base32 secret, SHA1, 6, 30 s."""
    b32 = base64.b32encode(secret).decode().rstrip("=")
    return f"otpauth://totp/{issuer}:{username}?secret={b32}&issuer={issuer}"


def _places(values: Iterable[str]) -> frozenset[str]:
    out = frozenset(v.strip() for v in values if v.strip())
    for p in out:
        if not (p.isdigit() and len(p) <= 10):
            raise InvalidArgument("places: issuing point codes are digits", field="places")
    return out


class AppSpec:
    """What registering or changing an app sets."""

    def __init__(
        self,
        *,
        app_id: str,
        unit_code: str,
        places: Iterable[str] = (),
        methods: Iterable[str] = ("*",),
        permissions: Iterable[str] = (),
        cert_cn: str = "",
        description: str = "",
    ) -> None:
        self.app_id = check_name(app_id, "app_id")
        self.unit_code = unit_code
        self.places = _places(places)
        self.methods = frozenset(methods)
        self.permissions = frozenset(Permission(p) for p in permissions)
        self.cert_cn = cert_cn
        self.description = description


class IdentityAdmin:
    """Users, roles and apps; every method checks the actor's unit."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.pool = identity.pool
        self.sealer = identity.sealer

    @staticmethod
    def _own(actor: Principal, unit_code: str) -> None:
        if actor.unit_code != "*" and not (actor.unit_code == unit_code and actor.scope.office):
            raise PermissionDenied(f"unit {unit_code} is outside the caller's scope")

    async def _unit_of_user(self, username: str) -> str:
        login = await store.login_row(self.pool, username)
        if login is None:
            raise NotFound(f"username: no user {username}", field="username")
        return login.unit_code

    # -- roles ---------------------------------------------------------------

    async def create_role(
        self, actor: Principal, name: str, permissions: Iterable[str], description: str = ""
    ) -> Role:
        """Create a role or replace its permissions. Roles are shared by units; an
        actor cannot create a role with a permission it lacks itself."""
        try:
            perms = frozenset(Permission(p) for p in permissions)
        except ValueError as exc:
            raise InvalidArgument(f"permissions: {exc}", field="permissions") from None
        if not perms <= actor.permissions:
            raise PermissionDenied("a role may hold only permissions the caller holds")
        role = Role(check_name(name, "name"), perms, description)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.create_role(conn, role)
            await append_entries(
                conn,
                [
                    log_entry(
                        "identity.role.set",
                        actor.label,
                        actor.unit_code,
                        f"role:{name}",
                        {"name": name, "permissions": sorted(perms)},
                    )
                ],
            )
        self.identity.forget()
        return role

    async def assign_role(
        self, actor: Principal, username: str, role_name: str, scope: Scope
    ) -> None:
        self._own(actor, scope.unit_code)
        if await self._unit_of_user(username) != scope.unit_code:
            raise InvalidArgument("scope.unit_code: is not the user's unit", field="unit_code")
        role = await store.role(self.pool, role_name)
        if role is None:
            raise NotFound(f"role: no role {role_name}", field="role")
        if not role.permissions <= actor.permissions:
            raise PermissionDenied("a role may be given only by someone holding its permissions")
        async with self.pool.acquire() as conn, conn.transaction():
            await store.assign_role(conn, username, role_name, scope, actor.label)
            await append_entries(
                conn,
                [
                    log_entry(
                        "identity.user.assign_role",
                        actor.label,
                        scope.unit_code,
                        f"user:{username}",
                        {
                            "username": username,
                            "role": role_name,
                            "office": scope.office,
                            "places": sorted(scope.places),
                        },
                    )
                ],
            )
        self.identity.forget()

    # -- users ---------------------------------------------------------------

    async def create_user(
        self,
        actor: Principal,
        *,
        username: str,
        password: str,
        unit_code: str,
        display_name: str = "",
    ) -> User:
        self._own(actor, unit_code)
        check_name(username, "username")
        check_password(password)
        hashed = await asyncio.to_thread(hash_password, password)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.create_user(
                conn,
                username=username,
                display_name=display_name,
                unit_code=unit_code,
                password_hash=hashed,
                created_by=actor.label,
            )
            await append_entries(
                conn,
                [
                    log_entry(
                        "identity.user.create",
                        actor.label,
                        unit_code,
                        f"user:{username}",
                        {"username": username, "display_name": display_name},
                    )
                ],
            )
        return User(username, display_name, unit_code, True, False)

    async def _change_user(
        self, actor: Principal, username: str, op: str, **change: object
    ) -> None:
        unit = await self._unit_of_user(username)
        self._own(actor, unit)
        content = {k: v for k, v in change.items() if k in ("enabled",)}
        async with self.pool.acquire() as conn, conn.transaction():
            await store.update_user(conn, username, **change)  # type: ignore[arg-type]
            await append_entries(
                conn,
                [
                    log_entry(
                        f"identity.user.{op}",
                        actor.label,
                        unit,
                        f"user:{username}",
                        {"username": username, **content},
                    )
                ],
            )
        self.identity.forget()

    async def set_user_enabled(self, actor: Principal, username: str, enabled: bool) -> None:
        await self._change_user(
            actor,
            username,
            "enable" if enabled else "disable",
            enabled=enabled,
            end_sessions=not enabled,
        )

    async def reset_password(self, actor: Principal, username: str, password: str) -> None:
        """A new password; every session of the user ends and the lock-out clears."""
        check_password(password)
        hashed = await asyncio.to_thread(hash_password, password)
        await self._change_user(
            actor, username, "reset_password", password_hash=hashed, end_sessions=True
        )

    async def enrol_totp(self, actor: Principal, username: str) -> bytes:
        """A new TOTP seed for ``username`` (returned once, to show as a QR code)."""
        seed = secrets.token_bytes(TOTP_SECRET_BYTES)
        sealed = self.sealer.seal(seed, totp_aad(username))
        await self._change_user(actor, username, "enrol_totp", totp_sealed=sealed)
        return seed

    # -- apps ----------------------------------------------------------------

    async def register_app(self, actor: Principal, spec: AppSpec) -> bytes:
        """Register an app; returns its HMAC secret, the only time it is shown."""
        self._own(actor, spec.unit_code)
        if not spec.permissions <= actor.permissions:
            raise PermissionDenied("an app may hold only permissions the caller holds")
        secret = secrets.token_bytes(SECRET_BYTES)
        row = store.AppRow(
            app_id=spec.app_id,
            unit_code=spec.unit_code,
            description=spec.description,
            secret_sealed=self.sealer.seal(secret, app_aad(spec.app_id)),
            secret_version=1,
            cert_cn=spec.cert_cn,
            places=spec.places,
            methods=spec.methods,
            permissions=spec.permissions,
            enabled=True,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await store.create_app(conn, row, actor.label)
            await append_entries(conn, [self._app_entry(actor, "register", row)])
        self.identity.forget()
        return secret

    def _app_entry(self, actor: Principal, op: str, row: store.AppRow) -> LogEntry:
        return log_entry(
            f"identity.app.{op}",
            actor.label,
            row.unit_code,
            f"app:{row.app_id}",
            {
                "app_id": row.app_id,
                "places": sorted(row.places),
                "methods": sorted(row.methods),
                "permissions": sorted(row.permissions),
                "cert_cn": row.cert_cn,
                "enabled": row.enabled,
                "secret_version": row.secret_version,
            },
        )

    async def _update_app(self, actor: Principal, app_id: str, op: str, **change: object) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.app_row(conn, app_id)
            if row is None:
                raise NotFound(f"app_id: no app {app_id}", field="app_id")
            self._own(actor, row.unit_code)
            fields = {f: getattr(row, f) for f in row.__dataclass_fields__}
            fields.update(change)
            new = store.AppRow(**fields)
            if not new.permissions <= actor.permissions:
                raise PermissionDenied("an app may hold only permissions the caller holds")
            await store.update_app(conn, new)
            await append_entries(conn, [self._app_entry(actor, op, new)])
        self.identity.forget()

    async def rotate_secret(self, actor: Principal, app_id: str) -> bytes:
        """A new secret (returned once); the old one stops working at once."""
        secret = secrets.token_bytes(SECRET_BYTES)
        row = await store.app_row(self.pool, app_id)
        version = (row.secret_version + 1) if row else 1
        await self._update_app(
            actor,
            app_id,
            "rotate_secret",
            secret_sealed=self.sealer.seal(secret, app_aad(app_id)),
            secret_version=version,
        )
        return secret

    async def set_app_enabled(self, actor: Principal, app_id: str, enabled: bool) -> None:
        await self._update_app(actor, app_id, "enable" if enabled else "disable", enabled=enabled)

    async def set_app_access(
        self,
        actor: Principal,
        app_id: str,
        *,
        places: Iterable[str],
        methods: Iterable[str],
        permissions: Iterable[str] | None = None,
    ) -> None:
        change: dict[str, object] = {"places": _places(places), "methods": frozenset(methods)}
        if permissions is not None:
            change["permissions"] = frozenset(Permission(p) for p in permissions)
        await self._update_app(actor, app_id, "set_access", **change)
