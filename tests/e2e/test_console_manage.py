"""The console's management pages in a real browser (Debian's Chromium through
Playwright) against the whole stack, as finance staff use them (issue #16):
refund and paper actions on a bill through their confirmation pages, users
created with role and scope (the TOTP QR shown once), locked, unlocked and
given a new password, base data kept, the inspection report read; and each
page refused to a user without its permission. Screenshots go to docs/console/
with EBILL_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from engine.identity import totp
from ops.stack import Stack
from protos.ebill.v1 import bill_pb2, issuance_pb2_grpc
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.browser import browser  # noqa: F401  (fixture)
from tests.e2e.lifecycle_support import by_number, receive_paper
from tests.e2e.test_console import _issue_one, _run, _shot, _sign_in

PASSWORD = "Window-E2E-2026!"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    # As in test_console.py: the stack's own CA is not this profile's.
    context = browser.new_context(locale="zh-CN", ignore_https_errors=True, accept_downloads=True)
    try:
        yield context.new_page()
    finally:
        context.close()


async def _status(stack: Stack, bill: bill_pb2.IssuedBill) -> bill_pb2.IssuedBill:
    async with stack.channel() as ch:
        got: bill_pb2.IssuedBill = await issuance_pb2_grpc.IssuanceServiceStub(ch).GetBill(
            by_number(bill)
        )
        return got


async def _one_sheet(stack: Stack, place: str) -> str:
    # One blank sheet only: the test uses it up, so no other test's "next
    # paper number" at this point moves.
    async with stack.channel() as ch:
        rng = await receive_paper(lc_grpc.LifecycleServiceStub(ch), 1, place=place)
        return str(rng.start_no)


def test_cashier_refunds_and_converts_and_voids_paper_with_confirmation(
    stack: Stack, page: Page
) -> None:
    refunded, _ = _run(_issue_one(stack))
    printed, _ = _run(_issue_one(stack))
    sheet = _run(_one_sheet(stack, printed.place_code))
    _sign_in(page, stack, "cashier-001")

    # Refund: the confirmation says what happens; a bad amount is refused
    # naming the field, the bill untouched.
    page.goto(f"{stack.http_url}/console/bills/{refunded.bill_code}/{refunded.bill_no}")
    page.click(".actions >> text=退费")
    expect(page.locator("h1")).to_have_text("确认退费")
    page.fill("input[name=refund_amount]", "12.345")
    page.fill("input[name=reason]", "患者退费")
    page.click("button:has-text('确认退费')")
    expect(page.locator(".error")).to_contain_text("refund_amount")
    assert _run(_status(stack, refunded)).status == bill_pb2.BILL_STATUS_ISSUED
    _shot(page, "refund-confirm")
    page.click("button:has-text('确认退费')")  # the whole amount, as the page offers
    expect(page.locator("h1 .red")).to_have_text("红票")
    expect(page.locator("dl.facts")).to_contain_text(f"{refunded.bill_code}/{refunded.bill_no}")
    assert _run(_status(stack, refunded)).status == bill_pb2.BILL_STATUS_RED_FLUSHED

    # Convert to paper, then void that paper: each through its confirmation.
    page.goto(f"{stack.http_url}/console/bills/{printed.bill_code}/{printed.bill_no}")
    page.click("text=换开纸质票据")
    expect(page.locator("h1")).to_have_text("确认换开纸质票据")
    page.click("button:has-text('确认换开')")
    expect(page.locator("dd.paper")).to_contain_text(sheet)
    assert _run(_status(stack, printed)).paper_no == sheet
    page.click("text=作废纸质票据")
    expect(page.locator("h1")).to_have_text("确认作废纸质票据")
    _shot(page, "paper-void-confirm")
    page.click("button:has-text('确认作废')")  # no reason: the form refuses to send
    expect(page.locator("input[name=reason]:invalid")).to_have_count(1)
    page.fill("input[name=reason]", "打印不清")
    page.click("button:has-text('确认作废')")
    expect(page.locator("dd.paper")).to_contain_text("已作废")
    expect(page.locator("table")).to_contain_text("void")  # the operation log

    # An auditor sees the bill but no action, and the action pages refuse it.
    _sign_in_again(page, stack, "auditor")
    page.goto(f"{stack.http_url}/console/bills/{printed.bill_code}/{printed.bill_no}")
    expect(page.locator(".actions a.danger")).to_have_count(0)
    page.goto(f"{stack.http_url}/console/bills/{printed.bill_code}/{printed.bill_no}/refund")
    expect(page.locator(".error")).to_contain_text("may not bill.refund")


def _sign_in_again(page: Page, stack: Stack, username: str) -> None:
    page.click("header button:has-text('退出')")
    _sign_in(page, stack, username)


def test_administrator_creates_locks_unlocks_and_resets_a_user(stack: Stack, page: Page) -> None:
    _sign_in(page, stack, "admin")
    page.click("nav >> text=用户权限")
    page.click("text=新建用户")
    page.fill("input[name=username]", "window-e2e")
    page.fill("input[name=display_name]", "二号窗口")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.select_option("select[name=role]", "cashier")
    page.fill("input[name=places]", "002,999")
    page.click("button:has-text('创建用户')")
    expect(page.locator(".error")).to_contain_text("places")  # 999 is no point of the unit
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.fill("input[name=places]", "002")
    _shot(page, "user-new")
    page.click("button:has-text('创建用户')")
    expect(page.locator("h1")).to_have_text("用户 window-e2e 已创建")

    # A stock manager needs a second factor: its QR code is shown once.
    page.goto(f"{stack.http_url}/console/identity/users/new")
    page.fill("input[name=username]", "office-e2e")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.select_option("select[name=role]", "stock-manager")
    page.check("input[name=office]")
    page.click("button:has-text('创建用户')")
    expect(page.locator("img.totp-qr")).to_be_visible()
    uri = page.locator("code.totp-uri").inner_text()
    _shot(page, "user-created-totp")
    b32 = parse_qs(urlparse(uri).query)["secret"][0]
    seed = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    assert _sign_in_works(stack, "office-e2e", PASSWORD, totp(seed, time.time()))
    page.goto(f"{stack.http_url}/console/identity")
    row = page.locator("table.staff tr", has_text="window-e2e")
    expect(row).to_contain_text("cashier（002）")
    assert b32 not in page.content()  # never shown again

    # Lock through the confirmation page: the user can no longer sign in.
    row.locator("text=停用").click()
    expect(page.locator("h1")).to_have_text("确认停用用户")
    page.click("button:has-text('确认停用')")
    expect(page.locator("p.ok")).to_contain_text("已停用")
    expect(page.locator("table.staff tr", has_text="window-e2e")).to_contain_text("已停用")
    _shot(page, "users")
    assert not _sign_in_works(stack, "window-e2e", PASSWORD)
    page.locator("table.staff tr", has_text="window-e2e").locator("text=启用").click()
    page.click("button:has-text('确认启用')")
    assert _sign_in_works(stack, "window-e2e", PASSWORD)

    # A new password: the old one no longer signs in.
    new = "Window-Reset-2026!"
    page.locator("table.staff tr", has_text="window-e2e").locator("text=重置密码").click()
    page.fill("input[name=password]", new)
    page.fill("input[name=password2]", new)
    page.click("button:has-text('确认重置')")
    expect(page.locator("p.ok")).to_contain_text("密码已重置")
    assert not _sign_in_works(stack, "window-e2e", PASSWORD)
    assert _sign_in_works(stack, "window-e2e", new)

    # A cashier manages no users: the pages refuse it.
    with httpx.Client(base_url=stack.http_url, verify=False) as client:
        r = client.post(
            "/console/login", data={"username": "window-e2e", "password": new, "totp": ""}
        )
        assert r.status_code == 303
        assert client.get("/console/identity/users/new").status_code == 403


def _sign_in_works(stack: Stack, username: str, password: str, code: str = "") -> bool:
    with httpx.Client(base_url=stack.http_url, verify=False) as client:
        r = client.post(
            "/console/login", data={"username": username, "password": password, "totp": code}
        )
        return r.status_code == 303


def test_base_data_is_kept_and_the_inspection_report_read(stack: Stack, page: Page) -> None:
    _sign_in(page, stack, "admin")
    page.click("nav >> text=基础数据")
    expect(page.locator("h1")).to_have_text("基础数据")
    page.click("text=新增收费项目")
    page.fill("input[name=charge_code]", "E2E-ITEM-1")
    page.fill("input[name=charge_name]", "控制台测试项目")
    page.fill("input[name=valid_from]", "2026-01-01")
    page.click("button:has-text('保存')")
    row = page.locator("table.basedata tr", has_text="E2E-ITEM-1")
    expect(row).to_contain_text("控制台测试项目")
    _shot(page, "basedata")

    page.click("text=HIS 项目对照")
    page.click("text=新增HIS 项目对照")
    page.fill("input[name=his_code]", "HIS-E2E-1")
    page.fill("input[name=charge_code]", "E2E-ITEM-1")
    page.click("button:has-text('保存')")  # no start date: refused, naming it
    expect(page.locator(".error")).to_contain_text("valid_from")
    page.fill("input[name=valid_from]", "2026-01-01")
    page.click("button:has-text('保存')")
    expect(page.locator("table.basedata tr", has_text="HIS-E2E-1")).to_contain_text("E2E-ITEM-1")

    page.goto(f"{stack.http_url}/console/catalog?kind=charge_item")
    page.locator("table.basedata tr", has_text="E2E-ITEM-1").locator("text=停用").click()
    expect(page.locator("h1")).to_have_text("确认停用收费项目")
    page.fill("input[name=on]", "2026-12-31")
    page.click("button:has-text('确认停用')")
    expect(page.locator("table.basedata tr", has_text="E2E-ITEM-1")).to_contain_text("2026-12-31")

    # The auditor reads the inspection report, and is refused base data (catalog.read).
    page.click("header button:has-text('退出')")
    _sign_in(page, stack, "auditor")
    page.click("nav >> text=巡检报告")
    expect(page.locator("h1")).to_have_text("巡检报告")
    expect(page.locator("table.inspection").first).to_contain_text("database size")
    expect(page.locator("b.verdict")).to_be_visible()
    _shot(page, "inspection")
    page.goto(f"{stack.http_url}/console/catalog")
    expect(page.locator(".error")).to_contain_text("may not catalog.read")
