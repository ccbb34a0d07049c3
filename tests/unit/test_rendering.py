"""A rendered bill checked as a person would: the PDF turned into text (pdftotext)
and into a picture (pdftoppm) compared with a golden image; the notice slip's QR
decoded (zbarimg) and verified; the export attached to the PDF read back."""

from __future__ import annotations

import io
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from pypdf import PdfReader

from engine.model import IssuedBill
from engine.qr import parse
from engine.verification import BillExport, Verdict
from tests.gm_reference import gm_verify
from tests.rendering_support import FISCAL, NAMES, UNIT, red_of, signed_bill
from usecases.rendering import EXPORT_NAME, render_html, render_notice, render_pdf, view_of

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "bill.png"


def export_of(b: IssuedBill) -> BillExport:
    return BillExport(b.canonical, b.unit_signature, b.fiscal_signature, b.qr_signature,
                      UNIT.public.point)  # fmt: skip


def pdf_of(b: IssuedBill, masked: bool = False) -> bytes:
    v = view_of(b, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public, masked=masked)
    return render_pdf(v, export_of(b))


def run(cmd: list[str], data: bytes) -> bytes:
    return subprocess.run(cmd, input=data, capture_output=True, check=True, timeout=60).stdout


def pdftotext(pdf: bytes) -> str:
    return run(["pdftotext", "-layout", "-", "-"], pdf).decode("utf-8")


def pdftoppm(pdf: bytes, dpi: int = 50) -> list[Image.Image]:
    out = run(["pdftoppm", "-r", str(dpi), "-png", "-singlefile", "-"], pdf)
    return [Image.open(io.BytesIO(out)).convert("RGB")]


def test_pdf_text_has_the_facts_figures_and_capitals() -> None:
    b = signed_bill()
    text = pdftotext(pdf_of(b))
    for expected in (
        "医疗门诊收费票据（电子）",
        "44060119",
        "0010535766",
        "a1b2c3",
        "2026-11-23",
        "张伟",
        "¥338.44",
        "叁佰叁拾捌元肆角肆分",
        "西药费",
        "头孢克肟片",
        "医保统筹基金支付",
        "111.68",
        "POS刷卡",
        "收费员01",
        "复核员02",
        "遂溪县人民医院（演示）",
    ):
        assert expected in text, expected
    assert "红字票据" not in text


def test_red_bill_is_marked_and_names_the_bill_it_cancels() -> None:
    original = signed_bill()
    text = pdftotext(pdf_of(red_of(original)))
    assert "红字票据" in text and "44060119/0010535766" in text
    assert "负叁佰叁拾捌元肆角肆分" in text and "-338.44" in text


def test_pdf_is_one_page_with_the_cjk_font_embedded(tmp_path: Path) -> None:
    pdf = pdf_of(signed_bill())
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    (tmp_path / "bill.pdf").write_bytes(pdf)
    fonts = subprocess.run(
        ["pdffonts", str(tmp_path / "bill.pdf")], capture_output=True, check=True, text=True
    ).stdout
    cjk = [line for line in fonts.splitlines() if "CJK" in line]
    # Embedded (emb = yes): a reader without the font shows the same glyphs.
    assert cjk and all(" yes " in line for line in cjk), fonts


def test_pdf_carries_its_export_and_it_verifies_offline() -> None:
    b = signed_bill()
    reader = PdfReader(io.BytesIO(pdf_of(b)))
    (data,) = reader.attachments[EXPORT_NAME]
    export = BillExport.from_json(data)
    assert export.canonical == b.canonical
    checks = export.check(FISCAL.public)
    assert checks.ok and checks.qr_signature is Verdict.VALID
    # Independent SM2 (gmssl) agrees on the countersignature.
    assert gm_verify(FISCAL.public.point, b.canonical + b.unit_signature, export.fiscal_signature)
    forged = replace(export, canonical=export.canonical.replace(b'"338.44"', b'"3380.44"'))
    assert forged.check(FISCAL.public).unit_signature is Verdict.INVALID


def test_pdf_looks_like_the_golden_image() -> None:
    # Fixed signatures: the QR, hence the picture, is the same on every run.
    b = replace(signed_bill(), qr_signature=bytes(range(71)))
    (img,) = pdftoppm(pdf_of(b))
    if os.environ.get("EBILL_UPDATE_GOLDEN") or not GOLDEN.exists():
        GOLDEN.parent.mkdir(exist_ok=True)
        img.save(GOLDEN)
        pytest.skip("golden image written")
    golden = Image.open(GOLDEN).convert("RGB")
    assert img.size == golden.size
    diff = ImageChops.difference(img, golden).convert("L")
    changed = sum(diff.histogram()[49:])
    # Tolerance: anti-aliasing and font hinting differences, not a changed layout.
    assert changed / (img.width * img.height) < 0.005, changed


def test_notice_slip_qr_decodes_and_verifies() -> None:
    b = signed_bill()
    v = view_of(b, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public, masked=True)
    png = render_notice(v)
    decoded = run(["zbarimg", "--quiet", "--raw", "-"], png).decode().strip()
    payload = parse(decoded)
    assert payload.verify(FISCAL.public)
    assert (payload.facts.bill_no, payload.facts.total_fen) == ("0010535766", 33844)
    # A tampered payload (amount changed) does not verify.
    tampered = decoded.replace(":338.44:", ":38.44:")
    assert not parse(tampered).verify(FISCAL.public)


def test_h5_and_pdf_come_from_one_template() -> None:
    v = view_of(signed_bill(), NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public)
    h5, pdf_html = render_html(v, "h5"), render_html(v, "pdf")
    assert '<body class="h5">' in h5 and '<body class="pdf">' in pdf_html
    assert 'name="viewport"' in h5 and "叁佰叁拾捌元肆角肆分" in h5
