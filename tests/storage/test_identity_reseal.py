"""Key rotation covers identity's sealed secrets too (issue 12): after a rotation
and `reseal`, no TOTP seed or app secret is left under the old key, the old key
can leave the ring, and a staff sign-in with TOTP and a signed app call still
pass through the same code the engine runs (ebill.grpc.auth)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from clients.credentials import AppCredentials
from ebill.grpc.auth import AuthInterceptor
from ebill.grpc.permissions import rule_for
from engine.errors import DataLoss
from engine.identity import Scope, totp
from engine.sealing import KeyRing
from usecases.identity import Identity
from usecases.identity.manage import SYSTEM, AppSpec, IdentityAdmin
from usecases.personal import key_status, reseal

pytestmark = pytest.mark.asyncio

PASSWORD = "Correct-horse-9"
METHOD = "/ebill.v1.IssuanceService/GetBacklog"


class _Ctx:
    """What the interceptor reads of a gRPC context."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self._md = tuple(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def _old_key_left(counts: dict[str, dict[int, int]], key_id: int) -> list[str]:
    return [table for table, by_key in counts.items() if by_key.get(key_id)]


async def test_rotate_and_reseal_move_identity_secrets_and_sign_in_still_works(db: Any) -> None:
    one = KeyRing.generate()
    admin = IdentityAdmin(Identity(db, one))
    await admin.create_role(SYSTEM, "rs-manager", ["stock.manage", "bill.read"])
    await admin.create_user(SYSTEM, username="rs-boss", password=PASSWORD, unit_code="U1")
    await admin.assign_role(SYSTEM, "rs-boss", "rs-manager", Scope("U1", office=True))
    seed = await admin.enrol_totp(SYSTEM, "rs-boss")
    secret = await admin.register_app(
        SYSTEM, AppSpec(app_id="rs-his", unit_code="U1", permissions=["bill.read"])
    )
    counts = await key_status(db)
    assert counts["users.totp_sealed"].get(one.active, 0) >= 1
    assert counts["apps.secret_sealed"].get(one.active, 0) >= 1

    two = one.rotated()
    report = await reseal(db, two, batch=2)
    assert report.others["users.totp_sealed"] >= 1
    assert report.others["apps.secret_sealed"] >= 1
    left = _old_key_left(await key_status(db), one.active)
    assert not left, f"rows still sealed under the old key: {left}"
    # A second run finds nothing to do.
    assert set((await reseal(db, two)).others.values()) == {0}

    # The old key leaves the ring: everything opens without it ...
    without_old = KeyRing({two.active: two.keys[two.active]}, two.active, two.index_key)
    ident = Identity(db, without_old)
    token = await ident.login("rs-boss", PASSWORD, totp(seed, time.time()))
    assert (await ident.principal_for_session(token)).name == "rs-boss"
    body = b"\x08\x01"
    md = AppCredentials("rs-his", secret).metadata(METHOD, body)
    who = await AuthInterceptor(ident).authenticate(METHOD, rule_for(METHOD), body, _Ctx(md))
    assert who.kind == "app" and who.name == "rs-his"
    # ... and nothing opens with the old key alone.
    stored = bytes(await db.fetchval("SELECT secret_sealed FROM apps WHERE app_id = 'rs-his'"))
    with pytest.raises(DataLoss):
        one.open(stored, b"ebill.app-secret:rs-his")
