"""The console's bill search pages a period through its 下一页 links (the page
token is a bill's id; the period is ordered by issue time, then id: migration
0018's keyset), in process against a real PostgreSQL. Imported bills get ids
after the engine's own though issued before them, so ids and times disagree
here on purpose."""

from __future__ import annotations

import html
import re
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

import httpx
from starlette.applications import Starlette

from ebill.http.console import routes
from engine.identity import totp
from engine.prepare import prepare
from engine.validation import validate
from storage.bills import reserve
from tests.factories import RING, bill
from tests.sealing_support import fixed_sealer
from tests.storage.test_reserve import UNIT, setup, unit_catalog, work
from usecases.identity import Identity, IdentityPolicy
from usecases.identity.demo import seed_identity
from usecases.identity.manage import IdentityAdmin
from usecases.lifecycle import Lifecycle

BILLS = 120  # more than two pages of 50
ROW = re.compile(r'<a href="/console/bills/[^/"]+/(\d+)">')
NEXT = re.compile(r'<a href="\?([^"]+)">下一页</a>')


async def test_a_period_pages_through_every_bill_once_in_issue_time_order(db: Any) -> None:
    await setup(db, numbers=BILLS)
    given = [
        prepare(validate(replace(bill(n), unit_code=UNIT), unit_catalog())) for n in range(BILLS)
    ]
    out = await reserve(db, list(enumerate(given)), ring=RING)
    assert all(work(out[i]) for i in range(BILLS))
    # Issue times scrambled against ids, ten bills to a minute (ties by id).
    await db.execute(
        "UPDATE bills SET issued_at = timestamptz '2026-03-01 08:00+08'"
        " + ((id * 37) % 12) * interval '1 minute' WHERE unit_code = $1",
        UNIT,
    )
    want = [
        r["bill_no"]
        for r in await db.fetch(
            "SELECT bill_no FROM bills WHERE unit_code = $1 ORDER BY issued_at, id", UNIT
        )
    ]
    assert len(want) == BILLS and want != sorted(want)

    identity = Identity(db, fixed_sealer(), IdentityPolicy())
    creds = await seed_identity(IdentityAdmin(identity), UNIT)
    services = SimpleNamespace(
        pool=db, identity=identity, ring=RING,
        lifecycle=Lifecycle(db, cast(Any, SimpleNamespace(issue_prepared=None)), 1.0, ring=RING),
    )  # fmt: skip
    transport = httpx.ASGITransport(app=Starlette(routes=routes(services)))
    async with httpx.AsyncClient(transport=transport, base_url="https://console") as client:
        admin = creds.staff["admin"]
        r = await client.post(
            "/console/login",
            data={"username": "admin", "password": admin.password,
                  "totp": totp(admin.totp_secret, time.time())},
        )  # fmt: skip
        assert r.status_code == 303, r.text
        seen: list[str] = []
        query = "place=&from=2026-03-01&to=2026-03-01"
        for _ in range(5):
            r = await client.get("/console/bills?" + query)
            assert r.status_code == 200, r.text[:300]
            seen += ROW.findall(r.text)
            more = NEXT.search(r.text)
            if more is None:
                break
            query = html.unescape(more.group(1))
        assert seen == want
        # The next day has none of them.
        r = await client.get("/console/bills?place=&from=2026-03-02&to=2026-03-02")
        assert ROW.findall(r.text) == []
