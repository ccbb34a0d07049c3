"""Rate limits of the public pages (issue #15): verifications per client address,
and wrong check codes per bill (the check code is only 6 hex digits), counted in
a real PostgreSQL (storage/ratelimit.py) and answered 429 with Retry-After, on
the JSON API, the verification page and the bill's own pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest_asyncio
from starlette.applications import Starlette

from ebill.http.public import routes
from engine.model import IssuedBill
from storage.ratelimit import PgCounter, hit, peek
from tests.rendering_support import FISCAL, NAMES, UNIT, signed_bill
from usecases.rendering import Names, Rendering, StaticKeys, view_of
from usecases.verification import Guard, Verification, VerifyLimits

A = signed_bill(seq=21, bill_no="0010536001", check_code="a1b2c3")
B = signed_bill(seq=22, bill_no="0010536002", check_code="d4e5f6")


class MemoryBills:
    def __init__(self, *bills: IssuedBill) -> None:
        self.bills = {(b.bill_code, b.bill_no): b for b in bills}

    async def get(self, bill_code: str, bill_no: str) -> IssuedBill | None:
        return self.bills.get((bill_code, bill_no))

    async def names(self, unit_code: str, bill_code: str) -> Names:
        return NAMES


class Pages:
    def __init__(self, rendering: Rendering, verification: Verification) -> None:
        self.rendering = rendering
        self.verification = verification


Client = Callable[[str], httpx.AsyncClient]


@pytest_asyncio.fixture
async def web(db: asyncpg.Pool) -> AsyncIterator[Client]:
    rendering = Rendering(MemoryBills(A, B), StaticKeys(FISCAL.public, {A.unit_code: UNIT.public}))
    limits = VerifyLimits(per_address=3, misses_per_bill=3)
    app = Starlette(
        routes=routes(Pages(rendering, Verification(rendering, Guard(PgCounter(db), limits))))
    )
    opened: list[httpx.AsyncClient] = []

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        c = httpx.AsyncClient(transport=transport, base_url="https://testserver")
        opened.append(c)
        return c

    yield client
    for c in opened:
        await c.aclose()


def codes(b: IssuedBill, check: str | None = None) -> dict[str, str]:
    return {"bill_code": b.bill_code, "bill_no": b.bill_no, "check_code": check or b.check_code}


async def test_counters_count_in_windows(db: asyncpg.Pool) -> None:
    assert (await peek(db, "t:x", 60)).n == 0
    assert [(await hit(db, "t:x", 60)).n for _ in range(3)] == [1, 2, 3]
    c = await peek(db, "t:x", 60)
    assert c.n == 3 and 0 < c.left_s <= 60
    assert (await hit(db, "t:y", 60)).n == 1  # keys apart


async def test_verifications_are_limited_per_address(web: Client) -> None:
    one, other = web("198.51.100.1"), web("198.51.100.2")
    for _ in range(3):
        assert (await one.get("/api/verify", params=codes(A))).json()["authentic"]
    refused = await one.get("/api/verify", params=codes(A))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    # The page answers the same address likewise, saying so in words.
    page = await one.get("/verify", params=codes(A))
    assert page.status_code == 429 and page.headers["Retry-After"]
    assert "查验过于频繁" in page.text and 'id="verdict"' not in page.text
    assert 'id="problem"' in page.text
    # The bare form is no verification: still served.
    assert (await one.get("/verify")).status_code == 200
    # Another address is not affected, nor a QR from it.
    assert (await other.post("/api/verify", json=codes(A))).json()["authentic"]
    qr = view_of(A, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public).qr_text
    assert (await other.get("/api/verify", params={"qr": qr})).json()["authentic"]


async def test_wrong_check_codes_are_limited_per_bill(web: Client) -> None:
    # Each guess from another address: the bound is the bill's, not the guesser's.
    for i, guess in enumerate(("000000", "000001", "000002")):
        r = await web(f"203.0.113.{i}").get("/api/verify", params=codes(A, guess))
        assert r.status_code == 404 and not r.json()["found"]
    # Now even the right code is refused for this bill, on every route that
    # would tell a right code from a wrong one.
    fresh = web("203.0.113.50")
    r = await fresh.get("/api/verify", params=codes(A))
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 3600
    page = await fresh.get(f"/bill/{A.bill_code}/{A.bill_no}?c={A.check_code}")
    assert page.status_code == 429 and "Retry-After" in page.headers
    pdf = await fresh.get(f"/bill/{A.bill_code}/{A.bill_no}.pdf?c={A.check_code}")
    assert pdf.status_code == 429
    qr = view_of(A, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public).qr_text
    amount = f"{A.total_fen // 100}.{A.total_fen % 100:02d}"
    forged = qr.replace(f":{amount}:", ":1.00:")
    assert (await fresh.get("/api/verify", params={"qr": forged})).status_code == 429
    # The bill's genuine QR still verifies: its check code is signed by the
    # platform, read and not guessed, so whoever spent the bill's misses cannot
    # lock out the holder who scans it.
    assert (await fresh.get("/api/verify", params={"qr": qr})).json()["authentic"]
    # Another bill is not affected.
    assert (await web("203.0.113.51").get("/api/verify", params=codes(B))).json()["authentic"]


async def test_misses_on_the_bill_page_count_and_unknown_bills_look_the_same(
    web: Client,
) -> None:
    c = web("192.0.2.9")
    for guess in ("111111", "222222", "333333"):
        r = await c.get(f"/bill/{B.bill_code}/{B.bill_no}?c={guess}")
        assert r.status_code == 404
    assert (await web("192.0.2.10").get("/verify", params=codes(B))).status_code == 429
    # A number no bill has: the same 404s, then the same 429, so the limit does
    # not tell which numbers exist either.
    ghost = {"bill_code": B.bill_code, "bill_no": "0099999999", "check_code": "abcdef"}
    answers = [(await web(f"192.0.2.{20 + i}").get("/api/verify", params=ghost)).status_code
               for i in range(4)]  # fmt: skip
    assert answers == [404, 404, 404, 429]
