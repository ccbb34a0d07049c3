"""Identity in PostgreSQL: users, roles, user roles, apps, sessions, nonces.

Rows in, rows out; the rules (hashing, TOTP, sealing, lock-out) are the use
case's (usecases.identity). Functions that change something take a connection
the caller holds a transaction on, so the change and its transparency-log leaf
commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine.errors import AlreadyExists, NotFound
from engine.identity import Permission, Role, Scope

__all__ = [
    "AppRow",
    "LoginRow",
    "RoleGrant",
    "add_login_attempt",
    "app_aad",
    "app_row",
    "app_rows",
    "assign_role",
    "claim_nonces",
    "create_app",
    "create_role",
    "create_session",
    "create_user",
    "end_session",
    "login_row",
    "prune_nonces",
    "role",
    "session_user",
    "set_login_state",
    "set_totp_step",
    "totp_aad",
    "update_app",
    "update_user",
    "user_grants",
]


def app_aad(app_id: str) -> bytes:
    """Additional data an app secret is sealed with: a sealed secret copied to
    another app's row does not open."""
    return b"ebill.app-secret:" + app_id.encode()


def totp_aad(username: str) -> bytes:
    """Additional data a TOTP seed is sealed with (bound to its user's row)."""
    return b"ebill.totp:" + username.encode()


@dataclass(frozen=True, slots=True)
class LoginRow:
    username: str
    unit_code: str
    password_hash: str
    totp_sealed: bytes | None
    enabled: bool
    failures: int
    locked_until: datetime | None
    sessions_after: datetime
    # The time step of the last TOTP code accepted (migration 0020); None: none yet.
    totp_last_step: int | None


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """A role given to a user over a data scope, with the role's permissions."""

    role: str
    scope: Scope
    permissions: frozenset[Permission]


@dataclass(frozen=True, slots=True)
class AppRow:
    app_id: str
    unit_code: str
    description: str
    secret_sealed: bytes
    secret_version: int
    cert_cn: str
    places: frozenset[str]
    methods: frozenset[str]
    permissions: frozenset[Permission]
    enabled: bool


def _perms(values: Sequence[str]) -> frozenset[Permission]:
    return frozenset(Permission(v) for v in values)


# -- roles ---------------------------------------------------------------------


async def create_role(conn: asyncpg.Connection, role_: Role) -> None:
    """Create ``role_`` or, if it exists, replace its permissions."""
    await conn.execute(
        "INSERT INTO roles (name, description) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description",
        role_.name,
        role_.description,
    )
    await conn.execute("DELETE FROM role_permissions WHERE role = $1", role_.name)
    await conn.executemany(
        "INSERT INTO role_permissions (role, permission) VALUES ($1, $2)",
        [(role_.name, str(p)) for p in sorted(role_.permissions)],
    )


async def role(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> Role | None:
    row = await conn.fetchrow(
        "SELECT r.name, r.description,"
        " coalesce(array_agg(p.permission) FILTER (WHERE p.permission IS NOT NULL), '{}') AS perms"
        " FROM roles r LEFT JOIN role_permissions p ON p.role = r.name"
        " WHERE r.name = $1 GROUP BY r.name",
        name,
    )
    if row is None:
        return None
    return Role(row["name"], _perms(row["perms"]), row["description"])


# -- users ---------------------------------------------------------------------


async def create_user(
    conn: asyncpg.Connection,
    *,
    username: str,
    display_name: str,
    unit_code: str,
    password_hash: str,
    created_by: str,
) -> None:
    try:
        await conn.execute(
            "INSERT INTO users (username, display_name, unit_code, password_hash, created_by)"
            " VALUES ($1, $2, $3, $4, $5)",
            username,
            display_name,
            unit_code,
            password_hash,
            created_by,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"username: {username} exists", field="username") from None


async def update_user(
    conn: asyncpg.Connection,
    username: str,
    *,
    password_hash: str | None = None,
    totp_sealed: bytes | None = None,
    enabled: bool | None = None,
    end_sessions: bool = False,
) -> None:
    """Change what is given; ``end_sessions`` voids every session issued so far."""
    done = await conn.execute(
        "UPDATE users SET password_hash = coalesce($2, password_hash),"
        " totp_sealed = coalesce($3, totp_sealed), enabled = coalesce($4, enabled),"
        # A new seed: no code of it has been used yet.
        " totp_last_step = CASE WHEN $3::bytea IS NULL THEN totp_last_step END,"
        " failures = CASE WHEN $2::text IS NULL THEN failures ELSE 0 END,"
        " locked_until = CASE WHEN $2::text IS NULL THEN locked_until END,"
        " sessions_after = CASE WHEN $5 THEN clock_timestamp() ELSE sessions_after END"
        " WHERE username = $1",
        username,
        password_hash,
        totp_sealed,
        enabled,
        end_sessions,
    )
    if done.endswith(" 0"):
        raise NotFound(f"username: no user {username}", field="username")


async def set_totp_step(conn: asyncpg.Connection, username: str, step: int) -> bool:
    """Record ``step`` as the user's last accepted TOTP step; False when a code
    of that step or a later one was accepted already (the row is the caller's,
    locked in its transaction)."""
    done = await conn.execute(
        "UPDATE users SET totp_last_step = $2 WHERE username = $1"
        " AND (totp_last_step IS NULL OR totp_last_step < $2)",
        username,
        step,
    )
    return not done.endswith(" 0")


async def login_row(conn: asyncpg.Connection | asyncpg.Pool, username: str) -> LoginRow | None:
    row = await conn.fetchrow(
        "SELECT username, unit_code, password_hash, totp_sealed, enabled, failures,"
        " locked_until, sessions_after, totp_last_step FROM users WHERE username = $1",
        username,
    )
    return None if row is None else LoginRow(**dict(row))


async def set_login_state(
    conn: asyncpg.Connection, username: str, *, failures: int, locked_until: datetime | None
) -> None:
    await conn.execute(
        "UPDATE users SET failures = $2, locked_until = $3 WHERE username = $1",
        username,
        failures,
        locked_until,
    )


async def add_login_attempt(
    conn: asyncpg.Connection, username: str, *, ok: bool, reason: str
) -> None:
    await conn.execute(
        "INSERT INTO login_attempts (username, ok, reason) VALUES ($1, $2, $3)",
        username,
        ok,
        reason,
    )


async def assign_role(
    conn: asyncpg.Connection, username: str, role_name: str, scope: Scope, granted_by: str
) -> None:
    try:
        await conn.execute(
            "INSERT INTO user_roles (username, role, unit_code, office, places, granted_by)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (username, role) DO UPDATE SET unit_code = EXCLUDED.unit_code,"
            " office = EXCLUDED.office, places = EXCLUDED.places,"
            " granted_by = EXCLUDED.granted_by, granted_at = now()",
            username,
            role_name,
            scope.unit_code,
            scope.office,
            sorted(scope.places),
            granted_by,
        )
    except asyncpg.ForeignKeyViolationError as exc:
        what = "role" if "role" in str(exc.constraint_name or "") else "username"
        raise NotFound(f"{what}: does not exist", field=what) from None


async def user_grants(conn: asyncpg.Connection | asyncpg.Pool, username: str) -> list[RoleGrant]:
    rows = await conn.fetch(
        "SELECT ur.role, ur.unit_code, ur.office, ur.places,"
        " coalesce(array_agg(p.permission) FILTER (WHERE p.permission IS NOT NULL), '{}') AS perms"
        " FROM user_roles ur LEFT JOIN role_permissions p ON p.role = ur.role"
        " WHERE ur.username = $1 GROUP BY ur.username, ur.role ORDER BY ur.role",
        username,
    )
    return [
        RoleGrant(
            r["role"],
            Scope(r["unit_code"], office=r["office"], places=frozenset(r["places"])),
            _perms(r["perms"]),
        )
        for r in rows
    ]


# -- sessions ------------------------------------------------------------------


async def create_session(
    conn: asyncpg.Connection, token_digest: bytes, username: str, expires_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO sessions (token_digest, username, expires_at) VALUES ($1, $2, $3)",
        token_digest,
        username,
        expires_at,
    )


async def session_user(
    conn: asyncpg.Connection | asyncpg.Pool, token_digest: bytes
) -> tuple[str, datetime] | None:
    """(username, expires_at) of a live session of an enabled user, else None."""
    row = await conn.fetchrow(
        "SELECT s.username, s.expires_at FROM sessions s JOIN users u USING (username)"
        " WHERE s.token_digest = $1 AND s.ended_at IS NULL AND s.expires_at > now()"
        " AND u.enabled AND s.created_at > u.sessions_after",
        token_digest,
    )
    return None if row is None else (row["username"], row["expires_at"])


async def end_session(conn: asyncpg.Connection, token_digest: bytes) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "UPDATE sessions SET ended_at = now() WHERE token_digest = $1 AND ended_at IS NULL"
        " RETURNING username",
        token_digest,
    )


# -- apps ----------------------------------------------------------------------

_APP_COLUMNS = (
    "app_id, unit_code, description, secret_sealed, secret_version, cert_cn, places,"
    " methods, permissions, enabled"
)


def _app(row: asyncpg.Record) -> AppRow:
    return AppRow(
        app_id=row["app_id"],
        unit_code=row["unit_code"],
        description=row["description"],
        secret_sealed=bytes(row["secret_sealed"]),
        secret_version=row["secret_version"],
        cert_cn=row["cert_cn"],
        places=frozenset(row["places"]),
        methods=frozenset(row["methods"]),
        permissions=_perms(row["permissions"]),
        enabled=row["enabled"],
    )


async def create_app(conn: asyncpg.Connection, app: AppRow, created_by: str) -> None:
    try:
        await conn.execute(
            "INSERT INTO apps (app_id, unit_code, description, secret_sealed, secret_version,"
            " cert_cn, places, methods, permissions, enabled, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            app.app_id,
            app.unit_code,
            app.description,
            app.secret_sealed,
            app.secret_version,
            app.cert_cn,
            sorted(app.places),
            sorted(app.methods),
            sorted(str(p) for p in app.permissions),
            app.enabled,
            created_by,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"app_id: {app.app_id} (or its certificate) exists") from None


async def update_app(conn: asyncpg.Connection, app: AppRow) -> None:
    done = await conn.execute(
        "UPDATE apps SET secret_sealed = $2, secret_version = $3, cert_cn = $4, places = $5,"
        " methods = $6, permissions = $7, enabled = $8, description = $9 WHERE app_id = $1",
        app.app_id,
        app.secret_sealed,
        app.secret_version,
        app.cert_cn,
        sorted(app.places),
        sorted(app.methods),
        sorted(str(p) for p in app.permissions),
        app.enabled,
        app.description,
    )
    if done.endswith(" 0"):
        raise NotFound(f"app_id: no app {app.app_id}", field="app_id")


async def app_row(conn: asyncpg.Connection | asyncpg.Pool, app_id: str) -> AppRow | None:
    row = await conn.fetchrow(f"SELECT {_APP_COLUMNS} FROM apps WHERE app_id = $1", app_id)
    return None if row is None else _app(row)


async def app_rows(conn: asyncpg.Connection | asyncpg.Pool) -> list[AppRow]:
    return [_app(r) for r in await conn.fetch(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY app_id")]


# -- nonces --------------------------------------------------------------------


async def claim_nonces(
    conn: asyncpg.Connection | asyncpg.Pool,
    claims: Sequence[tuple[str, str]],
    expires_at: datetime,
) -> set[tuple[str, str]]:
    """Insert (app_id, nonce) pairs in one statement; returns those that were new
    (a pair already there, unexpired, is a replay)."""
    rows = await conn.fetch(
        "INSERT INTO request_nonces (app_id, nonce, expires_at)"
        " SELECT a, n, $3 FROM unnest($1::text[], $2::text[]) AS c(a, n)"
        " ON CONFLICT (app_id, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at"
        " WHERE request_nonces.expires_at <= now()"
        " RETURNING app_id, nonce",
        [a for a, _ in claims],
        [n for _, n in claims],
        expires_at,
    )
    return {(r["app_id"], r["nonce"]) for r in rows}


async def prune_nonces(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    done = await conn.execute("DELETE FROM request_nonces WHERE expires_at <= now()")
    return int(done.rsplit(" ", 1)[-1])
