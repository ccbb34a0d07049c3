"""The finance console in a real browser (Debian's Chromium through Playwright),
against the whole stack: sign in (with TOTP for a stock manager), search, red-flush
with confirmation, approve a requisition, download a report and check that it
holds what the page showed. Screenshots go to docs/console/ with
EBILL_UPDATE_SCREENSHOTS=1 (issue #16)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from gmssl import func, sm3
from openpyxl import load_workbook
from playwright.sync_api import Browser, Page, expect

from engine.model import CST
from ops.stack import Stack
from protos.ebill.v1 import bill_pb2, issuance_pb2_grpc, stock_pb2, stock_pb2_grpc
from tests.browser import browser  # noqa: F401  (fixture)
from tests.e2e.conftest import CONSOLE_POINT, STOCK_POINTS
from tests.e2e.lifecycle_support import by_number, charge, issue
from tests.e2e.stock_support import CODE, office_stock, point
from tests.gm_reference import gm_verify
from tests.resilience import public_keys

T = TypeVar("T")
# The screenshots in docs/console/ are redrawn on request (EBILL_UPDATE_SCREENSHOTS=1);
# otherwise they go to a scratch directory, so a test run leaves the checkout clean.
SHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "console"
    if os.environ.get("EBILL_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "ebill-console-shots"
)
PLACE = "001"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    # The engine's certificate is from the stack's own local CA, which this
    # browser profile does not know; what is tested is the page, not the CA.
    context = browser.new_context(locale="zh-CN", ignore_https_errors=True, accept_downloads=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def _sign_in(page: Page, stack: Stack, username: str) -> None:
    staff = stack.demo.staff[username]
    page.goto(f"{stack.http_url}/console/")
    expect(page).to_have_url(f"{stack.http_url}/console/login?next=/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", staff.password)
    if staff.totp_secret:
        page.fill("input[name=totp]", stack.totp_code(username))  # a code is good once
    page.click("button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(username)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # Playwright's sync API keeps an event loop running in this thread, so the
    # gRPC calls run on a loop of their own in another thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _today() -> str:
    # The engine's days are China Standard Time days, whatever this machine's zone.
    return datetime.now(CST).strftime("%Y-%m-%d")


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_sign_in_is_required_and_a_wrong_password_or_code_is_refused(
    stack: Stack, page: Page
) -> None:
    page.goto(f"{stack.http_url}/console/bills")
    expect(page).to_have_url(f"{stack.http_url}/console/login?next=/console/bills")
    page.fill("input[name=username]", "manager-b")
    page.fill("input[name=password]", stack.demo.staff["manager-b"].password)
    page.fill("input[name=totp]", "000000")  # a manager needs the right second factor
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_be_visible()
    expect(page).to_have_url(f"{stack.http_url}/console/login")
    # Without a session every page refuses: a form post is not even read.
    with httpx.Client(verify=False) as client:
        r = client.post(
            f"{stack.http_url}/console/stock/requisitions/1", data={"decision": "approve"}
        )
        assert r.status_code == 401
        r = client.get(f"{stack.http_url}/console/reports/download?kind=issuance")
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


async def _issue_one(stack: Stack, place: str = PLACE) -> tuple[bill_pb2.IssuedBill, str]:
    given = charge(place=place)
    async with stack.channel() as ch:
        bill = await issue(issuance_pb2_grpc.IssuanceServiceStub(ch), given)
    return bill, given.payer.id_card_no


def test_cashier_searches_and_red_flushes_with_confirmation(stack: Stack, page: Page) -> None:
    bill, id_card = _run(_issue_one(stack))
    _sign_in(page, stack, "cashier-001")
    _shot(page, "dashboard-cashier")

    # Search the point's bills of today: the new bill is listed, its payer masked.
    page.click("nav >> text=票据查询")
    page.select_option("select[name=place]", PLACE)
    page.fill("input[name=from]", _today())
    page.click("form.filters button[type=submit]")
    row = page.locator("table.bills tr", has_text=bill.bill_no)
    expect(row).to_be_visible()
    expect(row).to_contain_text("已开具")
    assert id_card and id_card[6:-4] not in row.inner_text()  # masked: 110***********1234
    _shot(page, "search")

    # Another point's bills are outside a cashier of 001: refused, nothing shown.
    page.goto(f"{stack.http_url}/console/bills?place={STOCK_POINTS[0]}")
    expect(page.locator(".error")).to_contain_text("outside your scope")

    # Red-flush: a confirmation page first, then the red bill.
    page.goto(f"{stack.http_url}/console/bills/{bill.bill_code}/{bill.bill_no}")
    page.click("text=红冲")
    expect(page.locator("h1")).to_have_text("确认红冲")
    _shot(page, "red-flush-confirm")
    page.fill("input[name=reason]", "重复收费")
    page.click("button:has-text('确认红冲')")
    expect(page.locator("h1 .red")).to_have_text("红票")
    expect(page.locator("dl.facts")).to_contain_text(f"{bill.bill_code}/{bill.bill_no}")
    red_url = page.url
    _shot(page, "red-bill")

    async def status() -> int:
        async with stack.channel() as ch:
            got = await issuance_pb2_grpc.IssuanceServiceStub(ch).GetBill(by_number(bill))
            return int(got.status)

    assert _run(status()) == bill_pb2.BILL_STATUS_RED_FLUSHED
    # Posting the confirmation again gives the same red bill, never a second one.
    page.goto(f"{stack.http_url}/console/bills/{bill.bill_code}/{bill.bill_no}/red-flush")
    page.fill("input[name=reason]", "重复收费")
    page.click("button:has-text('确认红冲')")
    assert page.url == red_url
    # A cashier holds no stock approval: the stock page shows no decision buttons.
    page.goto(f"{stack.http_url}/console/stock")
    expect(page.locator("table.requisitions button")).to_have_count(0)


async def _requisition(stack: Stack) -> int:
    async with stack.channel() as ch:
        stock = stock_pb2_grpc.StockServiceStub(ch)
        await office_stock(stock, 200)
        req = await stock.RequestRequisition(
            stock_pb2.RequisitionRequest(
                operator=point(CONSOLE_POINT), bill_code=CODE, count=50, reason="console test"
            )
        )
        return int(req.id)


def test_manager_approves_a_requisition_and_downloads_a_report(stack: Stack, page: Page) -> None:
    req_id = _run(_requisition(stack))
    _sign_in(page, stack, "manager-a")  # a stock manager: password and TOTP
    _shot(page, "dashboard-office")
    page.click("nav >> text=票据库存")
    row = page.locator("table.requisitions tr", has_text="console test")
    expect(row).to_be_visible()
    _shot(page, "stock")
    row.locator("button[value=approve]").click()
    expect(page.locator("p.ok")).to_contain_text(f"申领 {req_id} 已批准")
    expect(page.locator("table.requisitions")).not_to_contain_text("console test")

    # The issuance report by point, on screen and as the Excel download.
    today = _today()
    page.goto(f"{stack.http_url}/console/reports?kind=issuance&by=place&from={today}&to={today}")
    cells = page.locator("table.report tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText))"
    )
    assert cells[-1][0] == "合计" and int(cells[-1][1]) >= 1
    _shot(page, "report")
    with page.expect_download() as download:
        page.click("text=导出 Excel")
    data = Path(download.value.path()).read_bytes()
    sheet = load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    rows = [[str(c.value) for c in r] for r in sheet.iter_rows(min_row=3)]
    assert rows == cells

    # The peak trend is drawn as bars, one per hour with bills.
    page.goto(f"{stack.http_url}/console/reports?kind=trend&step=hour&from={today}&to={today}")
    expect(page.locator(".chart .bar").first).to_be_visible()
    _shot(page, "trend")


def test_archive_zip_holds_every_bill_with_digests_signed_by_the_unit(
    stack: Stack, page: Page
) -> None:
    """Issue #16 item 4: the period's archive from the console, unzipped and
    checked as a records office would, with gmssl (not our SM2): every file's
    SM3 in the manifest, the manifest signed by the unit, each bill's unit and
    fiscal signatures over its canonical bytes; and the difference page."""
    # Point 003: the inpatient desk, few bills in this suite (001 takes the load).
    bill, _ = _run(_issue_one(stack, "003"))
    unit_key, fiscal_key = _run(public_keys(stack))
    _sign_in(page, stack, "admin")  # the archive holds unmasked payer data
    today = _today()
    page.goto(f"{stack.http_url}/console/archive?place=003&from={today}&to={today}")
    expect(page.locator("h1")).to_have_text("电子档案")
    archived = int(page.locator("b.archived").inner_text())
    assert archived >= 1
    _shot(page, "archive")
    with page.expect_download() as download:
        page.click("a.download")
    assert download.value.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(Path(download.value.path())) as z:
        files = {name: z.read(name) for name in z.namelist()}
    manifest = files.pop("manifest.json")
    signature = files.pop("manifest.sig")
    assert bytes.fromhex(files["unit.pub"].decode()) == unit_key
    assert gm_verify(unit_key, manifest, signature)
    listed = json.loads(manifest)
    assert listed["unit"] == bill.unit_code and listed["from"] == listed["to"] == today
    assert set(listed["sm3"]) == set(files)  # nothing added or left out
    for name, data in files.items():
        assert sm3.sm3_hash(func.bytes_to_list(data)) == listed["sm3"][name], name
    assert len(listed["bills"]) == archived
    assert f"{bill.bill_code}/{bill.bill_no}" in listed["bills"]
    folder = f"{bill.bill_code}-{bill.bill_no}/"
    canonical, unit_sig = files[folder + "canonical.bin"], files[folder + "unit.sig"]
    assert canonical == bill.canonical
    assert gm_verify(unit_key, canonical, unit_sig)
    assert gm_verify(fiscal_key, canonical + unit_sig, files[folder + "fiscal.sig"])
    assert files[folder + "bill.pdf"].startswith(b"%PDF")
    # A changed manifest no longer verifies.
    assert not gm_verify(unit_key, manifest.replace(b'"unit"', b'"unix"'), signature)
    # The difference lists as many bills as it counts, and not the archived one.
    missing = int(page.locator("b.missing").inner_text())
    rows = page.locator("table.unarchived tbody tr")
    assert rows.count() == max(missing, 1)
    expect(page.locator("table.unarchived")).not_to_contain_text(bill.bill_no)

    # The administration pages (read-only): staff, roles, apps; write-offs, audits.
    page.click("nav >> text=用户权限")
    expect(page.locator("table.staff")).to_contain_text("cashier-001")
    expect(page.locator("table.staff")).to_contain_text("已绑定")  # the managers' TOTP
    expect(page.locator("table.apps tbody tr").first).to_be_visible()
    _shot(page, "identity")
    page.click("nav >> text=核销稽核")
    expect(page.locator("h1")).to_have_text("核销与稽核")
    _shot(page, "writeoffs")
