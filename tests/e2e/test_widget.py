"""The H5 widget for apps (issue #15) in headless Chromium (Debian's): a page of
another origin (an app's or WeChat official account's page) includes widget.js
with a bill's code, number and check code; the card appears in an iframe from
the engine's origin, verified, the payer masked, sized to its content, and
opens the full bill. A wrong check code shows 查无此票; a site the engine does
not allow to frame it gets nothing (CSP frame-ancestors, enforced by the browser).
The bills are signed in memory, as in test_public_pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from ebill.http.public import routes
from engine.model import IssuedBill
from engine.money import format_fen
from tests.browser import browser, page, serve
from tests.e2e.test_public_pages import ORIGINAL, PLAIN, services

__all__ = ["browser", "page"]


@dataclass
class Framed:
    rendering: object
    verification: object
    frame_ancestors: str


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    with serve(Starlette(routes=routes(services()))) as url:
        yield url


@pytest.fixture(scope="module")
def strict_engine_url() -> Iterator[str]:
    # An engine that lets only one app's site frame the widget.
    s = services()
    strict = Framed(s.rendering, s.verification, "https://app.hospital.example")
    with serve(Starlette(routes=routes(strict))) as url:  # type: ignore[arg-type]
        yield url


def _app_page(request: Request) -> HTMLResponse:
    q = request.query_params
    return HTMLResponse(
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>某医院 · 我的缴费</title></head><body><h1>缴费记录</h1>"
        "<p>以下为您本次就诊的电子票据：</p>"
        f"<script src='{q['engine']}/widget.js' data-bill-code='{q['code']}'"
        f" data-bill-no='{q['no']}' data-check-code='{q['check']}'></script>"
        "<p id='after'>页面其余内容</p></body></html>"
    )


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    with serve(Starlette(routes=[Route("/pay", _app_page)])) as url:
        yield url


def _open(page: Page, app_url: str, engine: str, b: IssuedBill, check: str = "") -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(
        f"{app_url}/pay?engine={engine}&code={b.bill_code}&no={b.bill_no}"
        f"&check={check or b.check_code}"
    )


def test_an_app_page_shows_the_bill_card(page: Page, app_url: str, engine_url: str) -> None:
    b = PLAIN
    _open(page, app_url, engine_url, b)
    frame = page.frame_locator("iframe.ebill-widget")
    expect(frame.locator("#w-no")).to_have_text(b.bill_no)
    expect(frame.locator("#w-code")).to_have_text(b.bill_code)
    expect(frame.locator("#w-check")).to_have_text(b.check_code)
    expect(frame.locator("#w-total")).to_have_text(format_fen(b.total_fen))
    expect(frame.locator("#w-verdict")).to_have_text("✔ 财政电子票据，签名验证通过")
    expect(frame.locator("#w-status")).to_have_text("正常")
    name = json.loads(b.canonical)["payer"]["name"]
    expect(frame.locator("#w-payer")).to_have_text(name[0] + "*" * (len(name) - 1))
    # The card is framed from the engine's origin and placed where the script was.
    iframe = page.locator("iframe.ebill-widget")
    assert (iframe.get_attribute("src") or "").startswith(f"{engine_url}/widget/bill/")
    assert page.evaluate("document.querySelector('iframe').nextElementSibling.id") == "after"
    # Sized to the card by its message (not the 260 px it starts with), within the phone.
    card_h = frame.locator("#widget").bounding_box()
    box = iframe.bounding_box()
    assert card_h and box and abs(box["height"] - card_h["height"]) <= 4 and box["width"] <= 390
    # The link opens the full H5 bill.
    with page.expect_popup() as popup:
        frame.locator("#w-open").click()
    full = popup.value
    expect(full.locator("#bill-no")).to_have_text(b.bill_no)
    expect(full.locator("h1")).to_have_text("医疗门诊收费票据（电子）")


def test_a_red_flushed_bill_says_so_in_the_card(page: Page, app_url: str, engine_url: str) -> None:
    _open(page, app_url, engine_url, ORIGINAL)
    frame = page.frame_locator("iframe.ebill-widget")
    expect(frame.locator("#w-status")).to_contain_text("已冲红")
    expect(frame.locator("#w-status")).to_contain_text("44060119/0010535767")


def test_a_wrong_check_code_shows_no_bill(page: Page, app_url: str, engine_url: str) -> None:
    _open(page, app_url, engine_url, PLAIN, check="000000")
    frame = page.frame_locator("iframe.ebill-widget")
    expect(frame.locator("#w-verdict")).to_have_text("查无此票：票据代码、号码或校验码不符")
    expect(frame.locator("#w-no")).to_have_count(0)
    r = httpx.get(f"{engine_url}/widget/bill/{PLAIN.bill_code}/{PLAIN.bill_no}?c=000000")
    assert r.status_code == 404


def test_a_site_not_allowed_to_frame_it_gets_nothing(
    page: Page, app_url: str, strict_engine_url: str
) -> None:
    r = httpx.get(
        f"{strict_engine_url}/widget/bill/{PLAIN.bill_code}/{PLAIN.bill_no}?c={PLAIN.check_code}"
    )
    assert r.headers["content-security-policy"] == "frame-ancestors https://app.hospital.example"
    _open(page, app_url, strict_engine_url, PLAIN)
    iframe = page.locator("iframe.ebill-widget")
    expect(iframe).to_have_count(1)
    page.wait_for_timeout(500)
    framed = iframe.element_handle()
    assert framed is not None
    content = framed.content_frame()
    # Chromium refused to show it: the frame holds its error page, not the card.
    assert content is not None
    assert content.url.startswith("chrome-error://"), content.url
    assert content.locator("#w-no").count() == 0
    # The script is served to anyone (it carries nothing of a bill).
    js = httpx.get(f"{strict_engine_url}/widget.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
