"""Self-service retrieval (issue #15, item 5) over HTTP: the page flow against a
real PostgreSQL and the real SMS sandbox (the code read back from what the
provider received), rate limits per phone and per address, expiry, bounded tries."""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest_asyncio
from starlette.applications import Starlette

from clients.sms import SmsClient
from ebill.http.selfservice import COOKIE, routes
from ops.sandboxes.sms import SmsSandbox
from tests.delivery_support import provider_pki, serve_app
from tests.factories import RING
from tests.storage.test_delivery import issue, prepared
from tests.storage.test_reserve import UNIT, setup
from usecases.selfservice import Limits, SelfService

TEL = "13912345678"
ID_CARD = "440823199001011234"


@pytest_asyncio.fixture(scope="module")
async def sms() -> AsyncIterator[tuple[SmsSandbox, SmsClient]]:
    tls, ca = provider_pki(Path(tempfile.mkdtemp(prefix="ebill-ss-")) / "pki")
    sandbox = SmsSandbox({"LTAI-ss": "ss-secret"}, {"某医院"})
    with serve_app(sandbox.app(), tls) as url:
        client = SmsClient(url, "LTAI-ss", "ss-secret", "某医院", ca_file=ca)
        yield sandbox, client
        await client.close()


@pytest_asyncio.fixture
async def web(
    db: asyncpg.Pool, sms: tuple[SmsSandbox, SmsClient]
) -> AsyncIterator[tuple[httpx.AsyncClient, SmsSandbox, SelfService]]:
    sandbox, client = sms
    sandbox.recorder.messages.clear()
    await setup(db, numbers=20)
    ss = SelfService(db, RING, client, public_url="https://bills.test")
    app = Starlette(routes=routes(ss))
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c, sandbox, ss


def sent_code(sandbox: SmsSandbox) -> str:
    m = sandbox.recorder.messages[-1]
    assert m.template == "SMS_SELFSERVICE_CODE"
    return m.params["code"]


async def test_a_patient_finds_his_bills_by_phone(
    web: tuple[httpx.AsyncClient, SmsSandbox, SelfService], db: asyncpg.Pool
) -> None:
    c, sandbox, _ = web
    mine = await issue(db, prepared(801, tel=TEL), prepared(802, tel=TEL))
    await issue(db, prepared(803, tel="13900000803"))  # someone else's
    page = await c.get(f"/selfservice/{UNIT}")
    assert page.status_code == 200 and "获取验证码" in page.text
    r = await c.post(f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": TEL})
    assert r.status_code == 200 and "139****5678" in r.text
    [m] = sandbox.recorder.messages
    assert m.to == TEL and re.fullmatch(r"\d{6}", m.params["code"]) and "5分钟" in m.text
    r = await c.post(f"/selfservice/{UNIT}/verify",
                     data={"kind": "tel", "value": TEL, "code": m.params["code"]})  # fmt: skip
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    c.cookies.set(COOKIE, r.cookies[COOKIE])
    bills = await c.get(f"/selfservice/{UNIT}/bills")
    assert bills.status_code == 200
    links = re.findall(r"href='([^']+)'", bills.text)
    assert sorted(links) == sorted(
        f"https://bills.test/bill/{w.bill_code}/{w.bill_no}?c={w.check_code}" for w in mine
    )
    # The code was spent: it opens no second session.
    again = await c.post(f"/selfservice/{UNIT}/verify",
                         data={"kind": "tel", "value": TEL, "code": m.params["code"]})  # fmt: skip
    assert again.status_code == 400
    # Without the cookie, nothing is listed.
    c.cookies.clear()
    assert (await c.get(f"/selfservice/{UNIT}/bills")).status_code == 403


async def test_by_id_card_the_code_goes_to_the_phone_on_the_bills(
    web: tuple[httpx.AsyncClient, SmsSandbox, SelfService], db: asyncpg.Pool
) -> None:
    c, sandbox, _ = web
    [w] = await issue(db, prepared(810, tel=TEL, id_card_no=ID_CARD))
    r = await c.post(f"/selfservice/{UNIT}/code", data={"kind": "id_card", "value": ID_CARD})
    assert r.status_code == 200 and TEL[-4:] not in r.text  # the phone is not shown
    assert sandbox.recorder.messages[-1].to == TEL
    form = {"kind": "id_card", "value": ID_CARD, "code": sent_code(sandbox)}
    r = await c.post(f"/selfservice/{UNIT}/verify", data=form)
    c.cookies.set(COOKIE, r.cookies[COOKIE])
    assert w.bill_no in (await c.get(f"/selfservice/{UNIT}/bills")).text
    # An ID card with no bills: the same answer, and no message sent.
    before = len(sandbox.recorder.messages)
    r = await c.post(f"/selfservice/{UNIT}/code",
                     data={"kind": "id_card", "value": "440823198001015678"})  # fmt: skip
    assert r.status_code == 200 and "验证码已发送" in r.text
    assert len(sandbox.recorder.messages) == before


async def test_sends_are_rate_limited_per_phone_and_per_address(
    web: tuple[httpx.AsyncClient, SmsSandbox, SelfService], db: asyncpg.Pool
) -> None:
    c, sandbox, ss = web
    r1 = await c.post(f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": TEL})
    r2 = await c.post(f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": TEL})
    assert r1.status_code == 200 and r2.status_code == 429
    assert r2.headers["Retry-After"] == "60"
    assert len(sandbox.recorder.messages) == 1
    # Per address: other phones from the same client, up to the hour's bound.
    ss.limits = replace(ss.limits, per_ip_hour=3)
    for i in range(2):
        ok = await c.post(
            f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": f"1370000000{i}"}
        )
        assert ok.status_code == 200
    refused = await c.post(
        f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": "13700000009"}
    )
    assert refused.status_code == 429
    bad = await c.post(f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": "0759775000"})
    assert bad.status_code in (400, 429)


async def test_tries_are_bounded_and_codes_expire(
    web: tuple[httpx.AsyncClient, SmsSandbox, SelfService], db: asyncpg.Pool
) -> None:
    c, sandbox, ss = web
    await c.post(f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": TEL})
    code = sent_code(sandbox)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        r = await c.post(f"/selfservice/{UNIT}/verify",
                         data={"kind": "tel", "value": TEL, "code": wrong})  # fmt: skip
        assert r.status_code == 400
    # Five wrong tries: even the right code is refused now.
    r = await c.post(
        f"/selfservice/{UNIT}/verify", data={"kind": "tel", "value": TEL, "code": code}
    )
    assert r.status_code == 429
    # An expired code is refused.
    ss.limits = Limits(code_ttl=timedelta(seconds=0), per_phone_minute=10)
    await c.post(f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": TEL})
    r = await c.post(f"/selfservice/{UNIT}/verify",
                     data={"kind": "tel", "value": TEL, "code": sent_code(sandbox)})  # fmt: skip
    assert r.status_code == 400 and "验证码已过期" in r.text


async def test_stored_codes_name_no_phone(
    web: tuple[httpx.AsyncClient, SmsSandbox, SelfService], db: asyncpg.Pool
) -> None:
    c, sandbox, _ = web
    await c.post(f"/selfservice/{UNIT}/code", data={"kind": "tel", "value": TEL})
    dump = str(await db.fetch("SELECT * FROM selfservice_codes"))
    assert TEL not in dump and sandbox.recorder.messages
