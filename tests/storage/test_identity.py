"""Identity use case on real PostgreSQL: sign-in with argon2id and TOTP,
lock-out, sessions, apps with sealed secrets, nonce replay, log leaves."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.errors import PermissionDenied, Unauthenticated
from engine.identity import Permission, Scope, totp
from tests.sealing_support import fixed_sealer
from usecases.identity import Identity, IdentityPolicy, app_aad
from usecases.identity.manage import SYSTEM, AppSpec, IdentityAdmin

pytestmark = pytest.mark.asyncio

PASSWORD = "Correct-horse-9"


async def _admin(db: Any, **policy: Any) -> tuple[Identity, IdentityAdmin]:
    ident = Identity(db, fixed_sealer(), IdentityPolicy(**policy))
    return ident, IdentityAdmin(ident)


async def _user(admin: IdentityAdmin, name: str, role: str, perms: list[str], **scope: Any) -> None:
    await admin.create_role(SYSTEM, role, perms)
    await admin.create_user(SYSTEM, username=name, password=PASSWORD, unit_code="U1")
    await admin.assign_role(SYSTEM, name, role, Scope("U1", **scope))


async def test_cashier_signs_in_and_gets_scope(db: Any) -> None:
    ident, admin = await _admin(db)
    await _user(admin, "cash1", "cashier", ["bill.issue", "bill.read"], places=frozenset({"001"}))
    token = await ident.login("cash1", PASSWORD)
    who = await ident.principal_for_session(token)
    assert who.kind == "user" and who.name == "cash1"
    assert who.can(Permission.BILL_ISSUE) and not who.can(Permission.STOCK_MANAGE)
    assert who.covers("U1", "001") and not who.covers("U1", "002")
    assert not who.covers("U1", "") and not who.covers("U2", "001")
    await ident.logout(token)
    ident.forget()
    with pytest.raises(Unauthenticated):
        await ident.principal_for_session(token)
    # Only the digest of a token is stored; every attempt and change is a leaf.
    assert (
        await db.fetchval("SELECT count(*) FROM sessions WHERE token_digest = $1", token.encode())
        == 0
    )
    ops = {r["op"] for r in await db.fetch("SELECT op FROM log_entries")}
    assert {
        "identity.login",
        "identity.logout",
        "identity.user.create",
        "identity.role.set",
        "identity.user.assign_role",
    } <= ops


async def test_manager_needs_totp(db: Any) -> None:
    ident, admin = await _admin(db)
    await _user(admin, "boss", "manager", ["stock.manage", "stock.approve"], office=True)
    with pytest.raises(Unauthenticated):  # not enrolled yet
        await ident.login("boss", PASSWORD)
    seed = await admin.enrol_totp(SYSTEM, "boss")
    with pytest.raises(Unauthenticated):
        await ident.login(
            "boss", PASSWORD, "000000" if totp(seed, time.time()) != "000000" else "111111"
        )
    token = await ident.login("boss", PASSWORD, totp(seed, time.time()))
    assert (await ident.principal_for_session(token)).scope.office
    sealed = await db.fetchval("SELECT totp_sealed FROM users WHERE username = 'boss'")
    assert seed not in bytes(sealed)


async def test_lock_out_after_failures(db: Any) -> None:
    ident, admin = await _admin(db, max_failures=3, lock_s=600)
    await _user(admin, "cash2", "cashier", ["bill.issue"], places=frozenset({"001"}))
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await ident.login("cash2", "Wrong-password-1")
    with pytest.raises(Unauthenticated):  # locked: even the right password is refused
        await ident.login("cash2", PASSWORD)
    # A reset by an administrator clears the lock.
    await admin.reset_password(SYSTEM, "cash2", "Another-pass-22")
    assert await ident.login("cash2", "Another-pass-22")
    fails = await db.fetchval(
        "SELECT count(*) FROM login_attempts WHERE username='cash2' AND NOT ok"
    )
    assert fails == 4


async def test_disabled_user_loses_sessions(db: Any) -> None:
    ident, admin = await _admin(db)
    await _user(admin, "cash3", "cashier", ["bill.issue"], places=frozenset({"001"}))
    token = await ident.login("cash3", PASSWORD)
    await admin.set_user_enabled(SYSTEM, "cash3", False)
    with pytest.raises(Unauthenticated):
        await ident.principal_for_session(token)
    with pytest.raises(Unauthenticated):
        await ident.login("cash3", PASSWORD)


async def test_app_secret_sealed_and_rotated(db: Any) -> None:
    ident, admin = await _admin(db)
    secret = await admin.register_app(
        SYSTEM, AppSpec(app_id="his", unit_code="U1", places=["001"], permissions=["bill.issue"])
    )
    app = await ident.app("his")
    assert app is not None and app.secret == secret and app.places == {"001"}
    stored = bytes(await db.fetchval("SELECT secret_sealed FROM apps WHERE app_id = 'his'"))
    assert secret not in stored
    assert fixed_sealer().open(stored, app_aad("his")) == secret
    new = await admin.rotate_secret(SYSTEM, "his")
    app = await ident.app("his")
    assert app is not None and app.secret == new != secret and app.secret_version == 2
    await admin.set_app_enabled(SYSTEM, "his", False)
    assert await ident.app("his") is None


async def test_actor_of_another_unit_refused(db: Any) -> None:
    ident, admin = await _admin(db)
    await _user(admin, "adm", "admin", ["identity.manage", "bill.issue"], office=True)
    await admin.enrol_totp(SYSTEM, "adm")
    actor = await ident.user_principal("adm")
    with pytest.raises(PermissionDenied):
        await admin.create_user(actor, username="x1", password=PASSWORD, unit_code="U2")
    with pytest.raises(PermissionDenied):  # a permission the actor lacks
        await admin.register_app(
            actor, AppSpec(app_id="a2", unit_code="U1", permissions=["stock.manage"])
        )


async def test_nonce_replay_and_window(db: Any) -> None:
    ident, _ = await _admin(db, window_s=60)
    now = datetime.now(UTC)
    assert await ident.claim_nonce("his", "n-1", now)
    assert not await ident.claim_nonce("his", "n-1", now)
    assert await ident.claim_nonce("other", "n-1", now)  # per app
    assert not await ident.claim_nonce("his", "n-2", now - timedelta(seconds=120))
    assert not await ident.claim_nonce("his", "n-3", now + timedelta(seconds=120))


async def test_a_totp_code_is_good_once(db: Any) -> None:
    """RFC 6238 section 5.2: a code accepted once is refused when presented again
    within its window, and so is the code of an earlier step; the next step's
    code passes; a refused replay counts as a failed sign-in."""
    ident, admin = await _admin(db)
    await _user(admin, "boss2", "manager2", ["stock.manage"], office=True)
    seed = await admin.enrol_totp(SYSTEM, "boss2")
    now = time.time()
    code = totp(seed, now)
    assert await ident.login("boss2", PASSWORD, code)
    with pytest.raises(Unauthenticated):  # the same code, seconds later
        await ident.login("boss2", PASSWORD, code)
    earlier = totp(seed, now - 30)
    if earlier != code:
        with pytest.raises(Unauthenticated):  # an older code, still within the drift
            await ident.login("boss2", PASSWORD, earlier)
    assert await ident.login("boss2", PASSWORD, totp(seed, now + 30))  # the next step's
    reasons = [
        r["reason"]
        for r in await db.fetch(
            "SELECT reason FROM login_attempts WHERE username = 'boss2' ORDER BY id"
        )
    ]
    assert reasons[:2] == ["ok", "code already used"] and reasons[-1] == "ok"
    # A new seed starts afresh: its current code passes (the last step was the next one).
    seed2 = await admin.enrol_totp(SYSTEM, "boss2")
    assert await ident.login("boss2", PASSWORD, totp(seed2, time.time()))
