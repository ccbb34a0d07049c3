"""The console's read-only administration listings against a real PostgreSQL:
the demo staff with roles, scope and TOTP state, the roles, the demo app; no
secret, password hash or TOTP seed leaves the database through them."""

from __future__ import annotations

from typing import Any

from storage import console_admin as admin
from tests.sealing_support import fixed_sealer
from usecases.identity import Identity, IdentityPolicy
from usecases.identity.demo import ROLES, STAFF, seed_identity
from usecases.identity.manage import IdentityAdmin

UNIT = "T00000016"


async def test_staff_roles_and_apps_are_listed_without_secrets(db: Any) -> None:
    creds = await seed_identity(IdentityAdmin(Identity(db, fixed_sealer(), IdentityPolicy())), UNIT)
    staff = {s.username: s for s in await admin.staff(db, UNIT)}
    assert set(staff) == set(STAFF)
    assert staff["cashier-001"].grants == (("cashier", "001"),)
    assert staff["manager-a"].grants == (("stock-manager", "票据办"),)
    assert staff["manager-a"].totp and not staff["cashier-001"].totp
    assert all(s.enabled and s.last_login is None for s in staff.values())
    roles = {r.name: set(r.permissions) for r in await admin.roles(db)}
    for name, perms in ROLES.items():
        assert roles[name] == {p.value for p in perms}
    [app] = await admin.apps(db, UNIT)
    assert app.app_id == creds.app_id and app.enabled
    text = repr(staff) + repr(app)
    assert creds.app_secret.hex() not in text
    assert not any(s.password in text for s in creds.staff.values())
    assert await admin.audit_reports(db, UNIT) == []
