"""The public pages opened in headless Chromium (Debian's) as a patient or an
insurer would: the H5 bill on a phone, the PDF and notice picture downloads, and
verification (查验) by typing the codes or by the QR, where a tampered QR and a
forged signature show as invalid. The bills are signed in memory (no stack)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.request import urlopen

import httpx
import pytest
import segno
from PIL import Image
from playwright.sync_api import Page
from starlette.applications import Starlette

from ebill.http.public import routes
from engine.model import BillStatus, IssuedBill
from engine.qr import parse
from tests.browser import browser, page, serve
from tests.rendering_support import FISCAL, NAMES, UNIT, red_of, signed_bill
from usecases.rendering import Names, Rendering, StaticKeys
from usecases.verification import Verification

__all__ = ["browser", "page"]


class MemoryBills:
    def __init__(self, *bills: IssuedBill) -> None:
        self.bills = {(b.bill_code, b.bill_no): b for b in bills}

    async def get(self, bill_code: str, bill_no: str) -> IssuedBill | None:
        return self.bills.get((bill_code, bill_no))

    async def names(self, unit_code: str, bill_code: str) -> Names:
        return NAMES


@dataclass
class Services:
    rendering: Rendering
    verification: Verification


ORIGINAL = replace(signed_bill(), status=BillStatus.RED_FLUSHED, red_by="44060119/0010535767")
RED = red_of(signed_bill())
PLAIN = signed_bill(seq=8, bill_no="0010535800", check_code="0f0f0f")
# The unit signature of another bill: a forged signature on this one.
FORGED = replace(signed_bill(seq=9, bill_no="0010535801", check_code="bbbbbb"),
                 unit_signature=PLAIN.unit_signature)  # fmt: skip


def services() -> Services:
    rendering = Rendering(
        MemoryBills(ORIGINAL, RED, PLAIN, FORGED),
        StaticKeys(FISCAL.public, {PLAIN.unit_code: UNIT.public}),
    )
    return Services(rendering, Verification(rendering))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(Starlette(routes=routes(services()))) as url:
        yield url


def test_h5_page_on_a_phone_shows_the_bill(page: Page, base_url: str, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    b = PLAIN
    page.goto(f"{base_url}/bill/{b.bill_code}/{b.bill_no}?c={b.check_code}")
    assert page.locator("h1").inner_text() == "医疗门诊收费票据（电子）"
    assert page.locator("#bill-no").inner_text() == b.bill_no
    assert page.locator("#capitals").is_visible()
    total = page.locator("#total").inner_text()
    assert total.startswith("¥") and total[1:] == f"{b.total_fen // 100}.{b.total_fen % 100:02d}"
    # One column on a phone: the sheet is no wider than the screen.
    width = page.evaluate("document.querySelector('main').getBoundingClientRect().width")
    assert width <= 390
    assert page.locator("svg.unit-seal").is_visible()
    assert page.locator("svg.fiscal-seal").is_visible()
    # The page links to its PDF, which the browser fetches as a PDF.
    href = page.locator("#pdf-link").get_attribute("href")
    assert href == f"{b.bill_no}.pdf?c={b.check_code}"
    with page.expect_response(lambda r: ".pdf" in r.url) as pdf_response:
        page.evaluate("href => fetch(href)", href)
    assert pdf_response.value.headers["content-type"] == "application/pdf"
    # What a person sees, kept with the test run for a look.
    page.screenshot(path=tmp_path / "h5.png", full_page=True)


def test_h5_page_of_a_red_flushed_bill_says_so(page: Page, base_url: str) -> None:
    b = ORIGINAL
    page.goto(f"{base_url}/bill/{b.bill_code}/{b.bill_no}?c={b.check_code}")
    assert "已冲红" in page.locator("#status").inner_text()
    page.goto(f"{base_url}/bill/{RED.bill_code}/{RED.bill_no}?c={RED.check_code}")
    assert page.locator("#red-mark").inner_text() == "红字票据 · 冲销 44060119/0010535766"


def test_wrong_check_code_is_not_found(base_url: str) -> None:
    client = httpx.Client(base_url=base_url)
    b = PLAIN
    assert client.get(f"/bill/{b.bill_code}/{b.bill_no}?c=000000").status_code == 404
    assert client.get(f"/bill/{b.bill_code}/{b.bill_no}.pdf?c=000000").status_code == 404
    pdf = client.get(f"/bill/{b.bill_code}/{b.bill_no}.pdf?c={b.check_code}")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_notice_picture_qr_scans_to_a_verifiable_payload(base_url: str) -> None:
    b = PLAIN
    with urlopen(f"{base_url}/bill/{b.bill_code}/{b.bill_no}/notice.png?c={b.check_code}") as r:
        png = r.read()
    text = (
        subprocess.run(
            ["zbarimg", "--quiet", "--raw", "-"], input=png, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    assert parse(text).verify(FISCAL.public)


def test_verification_page_by_codes_masks_the_payer(
    page: Page, base_url: str, tmp_path: Path
) -> None:
    b = PLAIN
    page.goto(f"{base_url}/verify")
    page.fill("input[name=bill_code]", b.bill_code)
    page.fill("input[name=bill_no]", b.bill_no)
    page.fill("input[name=check_code]", b.check_code)
    page.click("button[type=submit]")
    assert page.locator("#verdict").inner_text().startswith("真票")
    checks = page.locator("#checks").inner_text()
    assert checks.count("通过") == 3 and "未通过" not in checks
    payer = page.locator("#payer").inner_text()
    name = json.loads(b.canonical)["payer"]["name"]
    assert payer == name[0] + "*" * (len(name) - 1)
    page.screenshot(path=tmp_path / "verify.png", full_page=True)


def test_verification_shows_red_flush_status(page: Page, base_url: str) -> None:
    b = ORIGINAL
    page.goto(
        f"{base_url}/verify?bill_code={b.bill_code}&bill_no={b.bill_no}&check_code={b.check_code}"
    )
    assert "已冲红" in page.locator("#verdict").inner_text()
    assert "44060119/0010535767" in page.locator("#red-status").inner_text()


def test_forged_signature_shows_invalid(page: Page, base_url: str) -> None:
    b = FORGED
    page.goto(
        f"{base_url}/verify?bill_code={b.bill_code}&bill_no={b.bill_no}&check_code={b.check_code}"
    )
    assert page.locator("#verdict").inner_text().startswith("查验未通过")
    assert "未通过" in page.locator("#checks tr").first.inner_text()


def test_tampered_qr_shows_invalid(page: Page, base_url: str) -> None:
    from usecases.rendering import view_of

    good = view_of(PLAIN, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public).qr_text
    amount = f"{PLAIN.total_fen // 100}.{PLAIN.total_fen % 100:02d}"
    tampered = good.replace(f":{amount}:", ":1.00:")
    page.goto(f"{base_url}/verify")
    page.fill("input[name=qr]", tampered)
    page.click("button[type=submit]")
    assert "二维码签名无效" in page.locator("#verdict").inner_text()
    page.goto(f"{base_url}/verify")
    page.fill("input[name=qr]", good)
    page.click("button[type=submit]")
    assert page.locator("#verdict").inner_text().startswith("真票")


def test_qr_cut_of_its_signature_or_moved_to_another_bill_is_invalid(base_url: str) -> None:
    from usecases.rendering import view_of

    client = httpx.Client(base_url=base_url)
    good = view_of(PLAIN, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public).qr_text
    cut = good.rsplit(":", 1)[0] + ":"
    result = client.get("/api/verify", params={"qr": cut}).json()
    assert not result["authentic"] and "缺少财政签名" in result["reason"]
    # Another bill's genuine QR with this bill's number and check code: the
    # signature no longer covers the facts.
    other = view_of(FORGED, NAMES, unit_key=None, fiscal_key=None).qr_text.split(":")
    mine = good.split(":")
    moved = ":".join([*mine[:4], *other[4:]])
    result = client.get("/api/verify", params={"qr": moved}).json()
    assert not result["authentic"] and "签名无效" in result["reason"]


def test_verification_api(base_url: str) -> None:
    client = httpx.Client(base_url=base_url)
    b = PLAIN
    ok = client.post(
        "/api/verify",
        json={"bill_code": b.bill_code, "bill_no": b.bill_no, "check_code": b.check_code},
    ).json()
    assert ok["authentic"] and ok["checks"] == {
        "unit_signature": "valid", "countersignature": "valid", "qr_signature": "valid"
    }  # fmt: skip
    assert "*" in ok["bill"]["payer"]
    bad = client.get(f"/api/verify?bill_code={b.bill_code}&bill_no={b.bill_no}&check_code=x")
    assert bad.status_code == 404 and not bad.json()["found"]
    forged = client.get(
        f"/api/verify?bill_code={FORGED.bill_code}&bill_no={FORGED.bill_no}"
        f"&check_code={FORGED.check_code}"
    ).json()
    assert not forged["authentic"] and forged["checks"]["unit_signature"] == "invalid"
    assert client.post("/api/verify", content=b"[1]").status_code == 400


def _notice_png(base_url: str, b: IssuedBill) -> bytes:
    with urlopen(f"{base_url}/bill/{b.bill_code}/{b.bill_no}/notice.png?c={b.check_code}") as r:
        return bytes(r.read())


def _upload(page: Page, base_url: str, path: Path) -> None:
    page.goto(f"{base_url}/verify")
    page.set_input_files("#picture", str(path))
    page.click("#upload")


def test_a_picture_of_the_notice_slip_verifies(page: Page, base_url: str, tmp_path: Path) -> None:
    b = PLAIN
    notice = tmp_path / "notice.png"
    notice.write_bytes(_notice_png(base_url, b))
    _upload(page, base_url, notice)
    assert page.locator("#verdict").inner_text().startswith("真票")
    assert page.locator("#checks").inner_text().count("通过") == 3
    assert b.bill_no in page.locator("#bill").inner_text()
    # As a phone would take it: a little askew, smaller, as a JPEG.
    photo = tmp_path / "photo.jpg"
    img = Image.open(notice).convert("RGB")
    img = img.resize((img.width * 3 // 5, img.height * 3 // 5)).rotate(
        6, expand=True, fillcolor="white"
    )
    img.save(photo, quality=80)
    _upload(page, base_url, photo)
    assert page.locator("#verdict").inner_text().startswith("真票")
    page.screenshot(path=tmp_path / "verify-picture.png", full_page=True)


def test_a_picture_of_a_tampered_qr_shows_invalid(
    page: Page, base_url: str, tmp_path: Path
) -> None:
    # The real slip's QR read back, its amount changed, drawn again as a QR.
    real = tmp_path / "notice.png"
    real.write_bytes(_notice_png(base_url, PLAIN))
    text = subprocess.run(["zbarimg", "--quiet", "--raw", str(real)], capture_output=True,
                          check=True).stdout.decode().strip()  # fmt: skip
    amount = f"{PLAIN.total_fen // 100}.{PLAIN.total_fen % 100:02d}"
    assert f":{amount}:" in text
    forged = tmp_path / "forged.png"
    segno.make_qr(text.replace(f":{amount}:", ":1.00:"), error="m").save(str(forged), scale=8)
    _upload(page, base_url, forged)
    verdict = page.locator("#verdict").inner_text()
    assert verdict.startswith("查验未通过") and "二维码签名无效" in verdict


def test_a_picture_without_a_qr_or_not_a_picture_says_so(
    page: Page, base_url: str, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), "white").save(blank)
    _upload(page, base_url, blank)
    assert "图片中未找到二维码" in page.locator("#verdict").inner_text()
    text = tmp_path / "bill.png"
    text.write_bytes(b"not a picture at all")
    _upload(page, base_url, text)
    assert page.locator("#problem").inner_text().startswith("无法读取图片")
