"""The console's management pages in process against a real PostgreSQL: users
(create with role and scope, the TOTP URI shown once, lock, unlock, reset
password) and base data (save, withdraw with confirmation), each refusal
naming its field and each change leaving a transparency-log leaf. The browser
tests (tests/e2e/test_console_manage.py) walk the same pages on a whole stack."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from starlette.applications import Starlette

from ebill.http.console import routes
from ebill.http.console.auth import COOKIE, csrf_token
from engine.errors import Unauthenticated
from engine.identity import totp
from engine.lifecycle import BillKey
from engine.model import IssuedBill
from storage.bills import get_bill
from storage.paper import receive_paper
from tests.factories import RING
from tests.sealing_support import fixed_sealer
from tests.storage.test_offline import issued
from tests.storage.test_reserve import UNIT, prepared, setup
from usecases.identity import Identity, IdentityPolicy
from usecases.identity.demo import seed_identity
from usecases.identity.manage import IdentityAdmin
from usecases.lifecycle import Lifecycle
from usecases.paper import Paper

PASSWORD = "Console-Manage-2026!"


class Admin:
    def __init__(self, client: httpx.AsyncClient, identity: Identity, db: Any) -> None:
        self.client, self.identity, self.db = client, identity, db

    @property
    def csrf(self) -> str:
        return csrf_token(self.client.cookies.get(COOKIE) or "")

    async def post(self, path: str, **data: str) -> httpx.Response:
        return await self.client.post(path, data={"csrf": self.csrf, **data})

    async def leaves(self, op: str, ref: str) -> int:
        return int(
            await self.db.fetchval(
                "SELECT count(*) FROM log_entries WHERE op = $1 AND ref = $2", op, ref
            )
        )


@pytest.fixture
async def admin(db: Any) -> AsyncIterator[Admin]:
    await setup(db, numbers=10)
    identity = Identity(db, fixed_sealer(), IdentityPolicy())
    creds = await seed_identity(IdentityAdmin(identity), UNIT)

    async def bill(key: BillKey, *, reveal_pii: bool = True) -> IssuedBill:
        found = await get_bill(db, key, RING)
        assert found is not None
        return found

    services = SimpleNamespace(
        pool=db, identity=identity, h5_url=None, rendering=None, ring=RING, signer=None,
        paper=Paper(db, RING), issuance=SimpleNamespace(get_bill=bill),
        lifecycle=Lifecycle(db, cast(Any, SimpleNamespace(issue_prepared=None)), 1.0, ring=RING),
    )  # fmt: skip
    transport = httpx.ASGITransport(app=Starlette(routes=routes(services)))
    async with httpx.AsyncClient(transport=transport, base_url="https://console") as client:
        who = creds.staff["admin"]
        r = await client.post(
            "/console/login",
            data={"username": "admin", "password": who.password,
                  "totp": totp(who.totp_secret, time.time())},
        )  # fmt: skip
        assert r.status_code == 303, r.text
        yield Admin(client, identity, db)


async def test_a_user_is_created_with_role_and_scope_and_locked_unlocked_reset(
    admin: Admin,
) -> None:
    # Refusals name their field and create nothing.
    form = {"username": "window-9", "display_name": "窗口九", "password": PASSWORD,
            "password2": PASSWORD, "role": "cashier", "places": "001"}  # fmt: skip
    r = await admin.post("/console/identity/users", **{**form, "password2": "other"})
    assert r.status_code == 400 and "password2" in r.text
    r = await admin.post("/console/identity/users", **{**form, "places": "999"})
    assert r.status_code == 400 and "places" in r.text and "999" in r.text
    r = await admin.post("/console/identity/users", **{**form, "role": ""})
    assert r.status_code == 400 and "role" in r.text
    assert await admin.db.fetchval("SELECT count(*) FROM users WHERE username = 'window-9'") == 0

    # A cashier needs no second factor: no QR code; the user signs in.
    r = await admin.post("/console/identity/users", **form)
    assert r.status_code == 200 and "window-9 已创建" in r.text and "otpauth" not in r.text
    principal = await admin.identity.principal_for_session(
        await admin.identity.login("window-9", PASSWORD)
    )
    assert principal.scope.places == frozenset({"001"}) and not principal.scope.office
    assert await admin.leaves("identity.user.create", "user:window-9") == 1
    assert await admin.leaves("identity.user.assign_role", "user:window-9") == 1
    r = await admin.post("/console/identity/users", **form)  # the same name again
    assert r.status_code == 400 and "username" in r.text and "exists" in r.text

    # A stock manager does: its enrolment URI is shown once, and it works.
    r = await admin.post(
        "/console/identity/users",
        **{**form, "username": "office-9", "role": "stock-manager", "places": ""},
    )
    assert r.status_code == 400 and "places" in r.text  # neither office nor points
    r = await admin.post(
        "/console/identity/users",
        **{**form, "username": "office-9", "role": "stock-manager", "places": "", "office": "on"},
    )
    assert r.status_code == 200, r.text
    uri = re.search(r"otpauth://totp/[^<\"]+", r.text)
    assert uri and "data:image/svg+xml" in r.text
    b32 = parse_qs(urlparse(uri.group(0).replace("&amp;", "&")).query)["secret"][0]
    secret = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    token = await admin.identity.login("office-9", PASSWORD, totp(secret, time.time()))
    assert (await admin.identity.principal_for_session(token)).scope.office
    listing = (await admin.client.get("/console/identity")).text
    assert "office-9" in listing and b32 not in listing  # never shown again

    # Lock: a confirmation page, then the user is out and cannot sign in.
    r = await admin.client.get("/console/identity/users/lock?username=window-9")
    assert r.status_code == 200 and "确认停用" in r.text
    r = await admin.post("/console/identity/users/lock", username="window-9")
    assert r.status_code == 303
    with pytest.raises(Unauthenticated):
        await admin.identity.login("window-9", PASSWORD)
    assert await admin.leaves("identity.user.disable", "user:window-9") == 1
    r = await admin.post("/console/identity/users/lock", username="admin")  # not oneself
    assert r.status_code == 403 and "username" in r.text
    r = await admin.post("/console/identity/users/unlock", username="window-9")
    assert r.status_code == 303
    await admin.identity.login("window-9", PASSWORD)
    assert await admin.leaves("identity.user.enable", "user:window-9") == 1

    # Reset: the two passwords must agree; the new one signs in, the old does not.
    new = "Reset-Console-2026!"
    r = await admin.post(
        "/console/identity/users/password", username="window-9", password=new, password2="x"
    )
    assert r.status_code == 400 and "password2" in r.text
    r = await admin.post(
        "/console/identity/users/password", username="window-9", password=new, password2=new
    )
    assert r.status_code == 303
    with pytest.raises(Unauthenticated):
        await admin.identity.login("window-9", PASSWORD)
    await admin.identity.login("window-9", new)
    assert await admin.leaves("identity.user.reset_password", "user:window-9") == 1


async def test_base_data_is_saved_and_withdrawn_through_the_catalogue(admin: Admin) -> None:
    r = await admin.post(
        "/console/catalog/edit",
        kind="charge_item",
        charge_code="",
        charge_name="",
        valid_from="2026-13-01",
    )
    assert r.status_code == 400
    assert "charge_code" in r.text and "valid_from" in r.text
    r = await admin.post(
        "/console/catalog/edit", kind="charge_item", charge_code="C-CONSOLE",
        charge_name="控制台项目", valid_from="2026-01-01",
    )  # fmt: skip
    assert r.status_code == 303
    listing = (await admin.client.get("/console/catalog?kind=charge_item")).text
    assert "C-CONSOLE" in listing and "控制台项目" in listing
    r = await admin.post(
        "/console/catalog/edit", kind="mapping", his_code="HIS-CONSOLE", charge_code="C-CONSOLE",
        valid_from="2026-01-01",
    )  # fmt: skip
    assert r.status_code == 303, r.text
    assert "HIS-CONSOLE" in (await admin.client.get("/console/catalog?kind=mapping")).text
    r = await admin.client.get("/console/catalog/withdraw?kind=charge_item&key=C-CONSOLE")
    assert r.status_code == 200 and "确认停用" in r.text
    r = await admin.post(
        "/console/catalog/withdraw", kind="charge_item", key="C-CONSOLE", on="2026-12-01"
    )
    assert r.status_code == 303
    valid_to = await admin.db.fetchval(
        "SELECT valid_to FROM charge_codes WHERE unit_code = $1 AND charge_code = 'C-CONSOLE'",
        UNIT,
    )
    assert str(valid_to) == "2026-12-01"
    n = await admin.db.fetchval(
        "SELECT count(*) FROM log_entries WHERE unit_code = $1 AND op LIKE 'catalog.%'"
        " AND ref LIKE '%CONSOLE%'",
        UNIT,
    )
    assert n >= 3
    r = await admin.client.get("/console/catalog?kind=nope")
    assert r.status_code == 400 and "kind" in r.text


async def test_paper_is_converted_and_voided_through_confirmation_pages(admin: Admin) -> None:
    place = prepared(1).place_code
    await receive_paper(
        admin.db, unit_code=UNIT, place_code=place, paper_code="99000016", start_no=1,
        end_no=1, operator="clerk",
    )  # fmt: skip
    bill_id = await issued(admin.db, 1)
    code, no = await admin.db.fetchrow(
        "SELECT bill_code, bill_no FROM bills WHERE id = $1", bill_id
    )
    page = f"/console/bills/{code}/{no}"
    assert "换开纸质票据" in (await admin.client.get(page)).text
    r = await admin.client.get(f"{page}/paper/convert")
    assert r.status_code == 200 and "确认换开" in r.text
    r = await admin.post(f"{page}/paper/convert")
    assert r.status_code == 303
    shown = (await admin.client.get(page)).text
    assert "99000016 / 0000000001" in shown and "作废纸质票据" in shown
    r = await admin.post(f"{page}/paper/void", reason="")
    assert r.status_code == 400 and "reason" in r.text  # named, nothing voided
    r = await admin.post(f"{page}/paper/void", reason="打印不清")
    assert r.status_code == 303
    assert "已作废" in (await admin.client.get(page)).text
    ops = await admin.db.fetch("SELECT op FROM log_entries WHERE bill_id = $1 ORDER BY id", bill_id)
    assert [o["op"] for o in ops][-2:] == ["bill.convert_to_paper", "bill.void_paper"], ops
    # The refund page offers the whole amount; a part is refused naming the field.
    r = await admin.client.get(f"{page}/refund")
    assert r.status_code == 200 and "确认退费" in r.text
    r = await admin.post(f"{page}/refund", refund_amount="0.01", reason="部分退费")
    assert r.status_code == 400 and "refund_amount" in r.text
    r = await admin.post(f"{page}/refund", refund_amount="1.2.3", reason="x")
    assert r.status_code == 400 and "refund_amount" in r.text
