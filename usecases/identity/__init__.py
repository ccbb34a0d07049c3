"""Identity: who the caller of a request is (apps, sessions, nonces, sign-in).

The authentication path is the hot path of every call, so what it reads is
cached briefly (``IdentityPolicy.cache_s``): an app is a dict lookup; a
session a dict lookup after its first use; a nonce claim one multi-row INSERT
shared by every call waiting in the same event-loop turn (usecases.identity.
nonces). Management of users, roles and apps is in usecases.identity.manage.

Secrets are sealed with the data key ring (a :class:`Sealer`, engine.sealing
in the engine); what is written is logged in the transparency log in the same
transaction (storage.translog.append_entries).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.errors import Unauthenticated
from engine.identity import SECOND_FACTOR_PERMISSIONS, App, Principal, Scope, totp_step
from engine.translog import LogEntry, content_digest
from storage import identity as store
from storage.identity import app_aad, totp_aad
from storage.translog import append_entries
from usecases.identity.nonces import NonceClaims

__all__ = [
    "Identity",
    "IdentityPolicy",
    "Sealer",
    "app_aad",
    "hash_password",
    "log_entry",
    "token_digest",
    "totp_aad",
]

# argon2id with the library's defaults (RFC 9106's second recommended option:
# t=3, m=64 MiB, p=4); the parameters travel in each hash.
HASHER = PasswordHasher()
# Password checks at once per engine. Each is 64 MiB and four lanes of CPU on a
# thread; a burst of sign-ins (a shift change) must not take every core from the
# event loop that serves the pages, the HTTP gateway and gRPC. Beyond this they queue.
HASH_CONCURRENCY = 1


class Sealer(Protocol):
    """What sealing secrets needs (engine.sealing's key ring satisfies it)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, blob: bytes, aad: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    window_s: float = 300.0
    session_ttl_s: float = 8 * 3600.0
    max_failures: int = 5
    lock_s: float = 900.0
    cache_s: float = 5.0


def token_digest(token: str) -> bytes:
    """What the sessions table keeps of a token (SM3)."""
    return hashlib.new("sm3", token.encode()).digest()


def log_entry(op: str, principal: str, unit_code: str, ref: str, content: object) -> LogEntry:
    """A transparency-log entry for an identity operation; ``content`` never holds
    a secret or a password, only what was decided."""
    return LogEntry(
        op=op,
        principal=principal,
        unit_code=unit_code,
        ref=ref,
        occurred_at=datetime.now(UTC),
        content_digest=content_digest(content),
    )


class Identity:
    """Authentication: apps, nonces, sign-in, sessions."""

    def __init__(
        self, pool: asyncpg.Pool, sealer: Sealer, policy: IdentityPolicy | None = None
    ) -> None:
        self.pool = pool
        self.sealer = sealer
        self.policy = policy or IdentityPolicy()
        self._apps: dict[str, tuple[App | None, float]] = {}
        self._by_cn: dict[str, tuple[str | None, float]] = {}
        self._sessions: dict[bytes, tuple[Principal, float]] = {}
        self._nonces = NonceClaims(pool, self.policy.window_s)
        self._hashing = asyncio.Semaphore(HASH_CONCURRENCY)

    def forget(self) -> None:
        """Drop every cached app and session (after a change made here)."""
        self._apps.clear()
        self._by_cn.clear()
        self._sessions.clear()

    # -- applications --------------------------------------------------------

    async def app(self, app_id: str) -> App | None:
        """The enabled app ``app_id`` with its opened secret, or None."""
        now = time.monotonic()
        hit = self._apps.get(app_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        row = await store.app_row(self.pool, app_id)
        app = None
        if row is not None and row.enabled:
            app = App(
                app_id=row.app_id,
                unit_code=row.unit_code,
                places=row.places,
                methods=row.methods,
                secret=self.sealer.open(row.secret_sealed, app_aad(row.app_id)),
                permissions=row.permissions,
                enabled=row.enabled,
                cert_cn=row.cert_cn,
                description=row.description,
                secret_version=row.secret_version,
            )
        self._apps[app_id] = (app, now + self.policy.cache_s)
        return app

    async def app_by_cert(self, common_name: str) -> App | None:
        """The app a client certificate's common name identifies, or None."""
        now = time.monotonic()
        hit = self._by_cn.get(common_name)
        if hit is None or hit[1] <= now:
            app_id = await self.pool.fetchval(
                "SELECT app_id FROM apps WHERE cert_cn = $1 AND cert_cn <> ''", common_name
            )
            hit = (app_id, now + self.policy.cache_s)
            self._by_cn[common_name] = hit
        return None if hit[0] is None else await self.app(hit[0])

    async def claim_nonce(self, app_id: str, nonce: str, at: datetime) -> bool:
        """True the first time ``nonce`` of ``app_id`` is seen within the window
        (and ``at`` is within the window of now); False for a replay or a stale
        timestamp. Shared by every engine on the database (its primary key)."""
        now = datetime.now(UTC)
        if abs((now - at).total_seconds()) > self.policy.window_s:
            return False
        return await self._nonces.claim(app_id, nonce)

    # -- staff sign-in -------------------------------------------------------

    async def login(self, username: str, password: str, totp: str = "") -> str:
        """A new session token for a correct password (and TOTP code, for roles
        that need it); Unauthenticated otherwise, with one reason for every
        failure so that the answer tells nothing about which part was wrong."""
        now = datetime.now(UTC)
        # The password is checked before a connection is taken and the user's row
        # locked: a queue of sign-ins waiting for the hasher must not hold the
        # pool's connections (every page needs one) or each other's rows.
        seen = await store.login_row(self.pool, username)
        async with self._hashing:
            matches = await asyncio.to_thread(
                _verify, seen.password_hash if seen else _DUMMY_HASH, password
            )
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT 1 FROM users WHERE username = $1 FOR UPDATE", username
            )
            login = await store.login_row(conn, username) if row else None
            # A password changed (or a user made) meanwhile was not the one checked.
            matches = (
                matches
                and seen is not None
                and login is not None
                and (login.password_hash == seen.password_hash)
            )
            reason = await self._check(conn, login, username, matches, totp, now)
            ok = reason == ""
            await store.add_login_attempt(conn, username, ok=ok, reason=reason or "ok")
            unit = login.unit_code if login else ""
            if login is not None and reason != "locked":
                # Consecutive failures; max_failures of them lock the user (again,
                # at the next failure after the lock ends) until a success.
                failures = 0 if ok else login.failures + 1
                locked = (
                    now + timedelta(seconds=self.policy.lock_s)
                    if failures >= self.policy.max_failures
                    else None
                )
                await store.set_login_state(conn, username, failures=failures, locked_until=locked)
            token = secrets.token_urlsafe(32) if ok else ""
            if ok:
                await store.create_session(
                    conn,
                    token_digest(token),
                    username,
                    now + timedelta(seconds=self.policy.session_ttl_s),
                )
            await append_entries(
                conn,
                [
                    log_entry(
                        "identity.login",
                        username,
                        unit,
                        f"user:{username}",
                        {"username": username, "ok": ok, "reason": reason or "ok"},
                    )
                ],
            )
        if not ok:
            raise Unauthenticated("sign-in refused: wrong user name, password or code, or locked")
        return token

    async def _check(
        self,
        conn: asyncpg.Connection,
        login: store.LoginRow | None,
        username: str,
        password_matches: bool,
        code: str,
        now: datetime,
    ) -> str:
        """Why sign-in is refused ("" when it is not). The password was checked
        by the caller (an unknown name against a dummy hash, so it costs what a
        known one does)."""
        if login is None:
            return "unknown user"
        if login.locked_until is not None and login.locked_until > now:
            return "locked"
        if not password_matches:
            return "wrong password"
        if not login.enabled:
            return "disabled"
        grants = await store.user_grants(conn, username)
        if any(g.permissions & SECOND_FACTOR_PERMISSIONS for g in grants):
            if login.totp_sealed is None:
                return "second factor not enrolled"
            seed = self.sealer.open(login.totp_sealed, totp_aad(username))
            step = totp_step(seed, code, now.timestamp())
            if step is None:
                return "wrong code"
            # A code is good once: one seen by a shoulder or a proxy is refused
            # for the rest of its window, and so is any older one. This is the
            # last check, so the step is kept only by a sign-in that succeeds.
            if not await store.set_totp_step(conn, username, step):
                return "code already used"
        return ""

    async def logout(self, token: str) -> None:
        digest = token_digest(token)
        self._sessions.pop(digest, None)
        async with self.pool.acquire() as conn, conn.transaction():
            username = await store.end_session(conn, digest)
            if username is not None:
                await append_entries(
                    conn,
                    [log_entry("identity.logout", username, "", f"user:{username}", {})],
                )

    async def principal_for_session(self, token: str) -> Principal:
        """The user a live session token belongs to; Unauthenticated otherwise."""
        digest = token_digest(token)
        now = time.monotonic()
        hit = self._sessions.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = await store.session_user(self.pool, digest)
        if found is None:
            self._sessions.pop(digest, None)
            raise Unauthenticated("session unknown, ended or expired: sign in again")
        username, expires_at = found
        principal = await self.user_principal(username, session_id=digest.hex()[:16])
        left = (expires_at - datetime.now(UTC)).total_seconds()
        self._sessions[digest] = (principal, now + min(self.policy.cache_s, left))
        return principal

    async def user_principal(self, username: str, *, session_id: str = "") -> Principal:
        """A user with the union of their roles' permissions and scopes (one unit)."""
        login = await store.login_row(self.pool, username)
        if login is None:
            raise Unauthenticated("session unknown, ended or expired: sign in again")
        grants = await store.user_grants(self.pool, username)
        grants = [g for g in grants if g.scope.unit_code == login.unit_code]
        return Principal(
            kind="user",
            name=username,
            unit_code=login.unit_code,
            scope=Scope(
                login.unit_code,
                office=any(g.scope.office for g in grants),
                places=frozenset(p for g in grants for p in g.scope.places),
            ),
            permissions=frozenset(p for g in grants for p in g.permissions),
            roles=tuple(g.role for g in grants),
            session_id=session_id,
        )

    async def close(self) -> None:
        await self._nonces.close()


def _verify(hashed: str, password: str) -> bool:
    try:
        return HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password: str) -> str:
    return HASHER.hash(password)


_DUMMY_HASH = HASHER.hash("not a password of anyone")
