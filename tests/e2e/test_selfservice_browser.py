"""Self-service retrieval (issue #15, item 5) in a real browser (Debian's Chromium
through Playwright) against the whole stack, as a patient would: he opens the
unit's page (what the QR at the window points to), enters his phone or his ID
card number, reads the code from the SMS he received (the SMS sandbox, which
the engine's own SMS client sent it to), types it, sees his bills listed and
opens one. A wrong code is shown as such, and the right one still works after.
Also the H5 widget for apps, served by the stack's engine, on an app's page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from engine.model import CST
from engine.money import format_fen, parse_fen
from ops.stack import Stack
from protos.ebill.v1 import bill_pb2, issuance_pb2_grpc
from tests.browser import browser, serve  # noqa: F401  (fixture)
from tests.delivery_support import sandbox_messages
from tests.e2e.lifecycle_support import charge, issue, next_seq
from usecases import demo

pytestmark = pytest.mark.slow
T = TypeVar("T")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    # The engine's certificate is from the stack's own local CA, unknown to this
    # browser profile; what is tested is the page, not the CA. A phone screen.
    context = browser.new_context(
        locale="zh-CN", ignore_https_errors=True, viewport={"width": 390, "height": 844}
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # Playwright's sync API keeps an event loop running in this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _issue(stack: Stack, tel: str, id_card: str, n: int) -> list[bill_pb2.IssuedBill]:
    out = []
    async with stack.channel() as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
        for _ in range(n):
            b = charge()
            payer = replace(b.payer, tel=tel, id_card_no=id_card, email="")
            out.append(await issue(stub, replace(b, payer=payer)))
    return out


def _sms_code(stack: Stack, tel: str, before: int) -> str:
    """The code in the newest SMS to ``tel``, waiting for it to arrive."""
    deadline = time.monotonic() + 20
    while True:
        msgs = _run(sandbox_messages(stack.provider_url("sms"), stack.provider_ca, tel))
        codes = [m for m in msgs if m["template"] == "SMS_SELFSERVICE_CODE"]
        if len(codes) > before:
            return str(codes[-1]["params"]["code"])
        assert time.monotonic() < deadline, "no code reached the phone"
        time.sleep(0.2)


def _codes_sent(stack: Stack, tel: str) -> int:
    msgs = _run(sandbox_messages(stack.provider_url("sms"), stack.provider_ca, tel))
    return sum(m["template"] == "SMS_SELFSERVICE_CODE" for m in msgs)


def _yuan(amount: str) -> str:
    # The API's decimal string as the pages print it (two places, no float).
    return format_fen(parse_fen(amount))


def _today() -> str:
    return datetime.now(CST).strftime("%Y-%m-%d")


def test_a_patient_finds_his_bills_by_phone_and_opens_one(stack: Stack, page: Page) -> None:
    tel = f"139{next_seq():08d}"
    mine = _run(_issue(stack, tel, f"44082319490101{next_seq() % 10000:04d}", 2))
    before = _codes_sent(stack, tel)

    page.goto(f"{stack.http_url}/selfservice/{demo.UNIT_CODE}")
    expect(page.locator("h1")).to_contain_text(demo.UNIT_NAME)
    expect(page.locator("h1")).to_contain_text("电子票据查询")
    page.check("input[name=kind][value=tel]")
    page.fill("#value", tel)
    page.click("#send")
    # The page says where the code went, the phone masked.
    expect(page.locator("#sent")).to_have_text(f"验证码已发送至 {tel[:3]}****{tel[-4:]}")
    code = _sms_code(stack, tel, before)

    # A wrong code first: the error is shown, and the form stays for another try.
    page.fill("#code", "000000" if code != "000000" else "111111")
    page.click("#verify")
    expect(page.locator(".err")).to_be_visible()
    expect(page.locator(".err")).to_have_text("验证码错误，请重新输入")
    # Then the code from the SMS: his bills, and only his.
    page.fill("#code", code)
    page.click("#verify")
    expect(page).to_have_url(f"{stack.http_url}/selfservice/{demo.UNIT_CODE}/bills")
    expect(page.locator("h1")).to_contain_text("我的票据")
    rows = page.locator("#bills li.bill")
    expect(rows).to_have_count(2)
    listed = rows.all_inner_texts()
    for b in mine:
        row = next(r for r in listed if b.bill_no in r)
        assert f"{b.bill_code}-{b.bill_no}" in row
        assert _today() in row
        assert f"￥{_yuan(b.total_amount)}" in row

    # Following a link opens the bill's H5 page.
    b = mine[0]
    page.click(f"#bills a:has-text('{b.bill_no}')")
    expect(page.locator("#bill-no")).to_have_text(b.bill_no)
    expect(page.locator("h1")).to_have_text("医疗门诊收费票据（电子）")
    expect(page.locator("#total")).to_have_text(f"¥{_yuan(b.total_amount)}")
    assert f"c={b.check_code}" in page.url
    expect(page.locator("svg.fiscal-seal")).to_be_visible()


def test_a_patient_finds_his_bills_by_id_card(stack: Stack, page: Page) -> None:
    tel = f"139{next_seq():08d}"
    id_card = f"44082319490101{next_seq() % 10000:04d}"
    [bill] = _run(_issue(stack, tel, id_card, 1))
    before = _codes_sent(stack, tel)

    page.goto(f"{stack.http_url}/selfservice/{demo.UNIT_CODE}")
    page.check("input[name=kind][value=id_card]")
    page.fill("#value", id_card)
    page.click("#send")
    # The code goes to the phone on his bills, which the page does not show.
    expect(page.locator("#sent")).to_have_text("验证码已发送至您预留的手机")
    assert tel[-4:] not in page.locator("body").inner_text()
    page.fill("#code", _sms_code(stack, tel, before))
    page.click("#verify")
    row = page.locator("#bills li.bill")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"{bill.bill_code}-{bill.bill_no}")
    expect(row).to_contain_text(f"￥{_yuan(bill.total_amount)}")

    # Straight to the list in a new browser profile: no session, nothing listed.
    context = page.context.browser
    assert context is not None
    other = context.new_context(locale="zh-CN", ignore_https_errors=True)
    try:
        p2 = other.new_page()
        resp = p2.goto(f"{stack.http_url}/selfservice/{demo.UNIT_CODE}/bills")
        assert resp is not None and resp.status == 403
        assert bill.bill_no not in p2.locator("body").inner_text()
    finally:
        other.close()


def test_an_unknown_unit_is_said_so(stack: Stack, page: Page) -> None:
    resp = page.goto(f"{stack.http_url}/selfservice/99999999")
    assert resp is not None and resp.status == 404
    expect(page.locator("h1")).to_have_text("查无此单位")


def test_the_widget_of_an_issued_bill_on_an_apps_page(stack: Stack, page: Page) -> None:
    [b] = _run(_issue(stack, f"139{next_seq():08d}", f"44082319490101{next_seq() % 10000:04d}", 1))

    async def app_page(request: Request) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><meta charset='utf-8'><title>某医院小程序</title><h1>我的票据</h1>"
            f"<script src='{stack.http_url}/widget.js' data-bill-code='{b.bill_code}'"
            f" data-bill-no='{b.bill_no}' data-check-code='{b.check_code}'></script>"
        )

    with serve(Starlette(routes=[Route("/", app_page)])) as app_url:
        page.goto(app_url)
        frame = page.frame_locator("iframe.ebill-widget")
        expect(frame.locator("#w-no")).to_have_text(b.bill_no)
        expect(frame.locator("#w-total")).to_have_text(_yuan(b.total_amount))
        expect(frame.locator("#w-verdict")).to_have_text("✔ 财政电子票据，签名验证通过")
        expect(frame.locator("#w-unit")).to_have_text(demo.UNIT_NAME)
