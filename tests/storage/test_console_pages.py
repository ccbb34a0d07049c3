"""Every console page without path parameters renders for the administrator
(every report kind and search filter included), in process against a real
PostgreSQL: the quick check before the browser tests on a whole stack."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import httpx
from starlette.applications import Starlette

from ebill.http.console import PAGES, routes
from engine.identity import totp
from tests.factories import RING
from tests.sealing_support import fixed_sealer
from tests.storage.test_reserve import UNIT, setup
from usecases.identity import Identity, IdentityPolicy
from usecases.identity.demo import seed_identity
from usecases.identity.manage import IdentityAdmin
from usecases.lifecycle import Lifecycle

QUERIES = {
    "/console/bills": ["", "?place=", "?name=张三&status=issued&kind=outpatient&red=normal",
                       "?bus_no=X&bill_code=1&bill_no=2&from=2026-01-01&to=2026-12-31"],
    "/console/reports": ["", "?kind=issuance&by=place", "?kind=issuance&by=pay_channel",
                         "?kind=trend&step=hour", "?kind=stock_flow", "?kind=paper",
                         "?kind=back_entries"],
    "/console/reports/download": ["?kind=issuance&format=csv", "?kind=paper&format=xlsx"],
    "/console/identity/users/lock": ["?username=cashier-001"],
    "/console/identity/users/unlock": ["?username=cashier-001"],
    "/console/identity/users/password": ["?username=cashier-001"],
    "/console/catalog": ["", "?kind=mapping", "?kind=issuing_point"],
    "/console/catalog/edit": ["", "?kind=mapping", "?kind=issuing_point&key=001"],
    "/console/catalog/withdraw": ["?kind=charge_item&key=X", "?kind=issuing_point&key=001"],
}  # fmt: skip
# The archive needs rendering and the signer, the inspection the engine's settings.
NEEDS_STACK = {"/console/archive", "/console/archive/download", "/console/inspection"}


async def test_every_page_renders_for_the_administrator(db: Any) -> None:
    await setup(db, numbers=10)
    identity = Identity(db, fixed_sealer(), IdentityPolicy())
    creds = await seed_identity(IdentityAdmin(identity), UNIT)

    async def backlog() -> dict[str, Any]:
        return {"reserved": 0, "pending_countersign": 0, "fiscal_circuit_open": False}

    services = SimpleNamespace(
        pool=db, identity=identity, issuance=SimpleNamespace(backlog=backlog),
        lifecycle=Lifecycle(db, cast(Any, SimpleNamespace(issue_prepared=None)), 1.0, ring=RING),
        h5_url=None, rendering=None, ring=RING, signer=None,
    )  # fmt: skip
    app = Starlette(routes=routes(services))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://console") as client:
        admin = creds.staff["admin"]
        r = await client.post(
            "/console/login",
            data={"username": "admin", "password": admin.password,
                  "totp": totp(admin.totp_secret, time.time())},
        )  # fmt: skip
        assert r.status_code == 303, r.text
        for page in PAGES:
            if page.method != "GET" or "{" in page.path or page.permission is None:
                continue
            for query in QUERIES.get(page.path, [""]):
                r = await client.get(page.path + query)
                want = 503 if page.path in NEEDS_STACK else 200
                assert r.status_code == want, (page.path + query, r.text[:300])
        # A page token that is not a number is refused with its name, not ignored.
        r = await client.get("/console/bills?after=abc")
        assert r.status_code == 400 and "after" in r.text, r.text[:300]
