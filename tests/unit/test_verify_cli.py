"""`ebill verify pdf|qr|export` offline: a genuine bill passes; a forged
signature, an altered bill or a tampered QR fails with exit status 1."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from pypdf import PdfReader, PdfWriter
from typer.testing import CliRunner

from ebill.cli import app
from engine.model import IssuedBill
from engine.sm2 import SigningKey
from engine.verification import BillExport
from tests.rendering_support import FISCAL, NAMES, UNIT, signed_bill
from usecases.rendering import EXPORT_NAME, render_pdf, view_of

runner = CliRunner()
KEY = FISCAL.public.point.hex()


def export_of(b: IssuedBill) -> BillExport:
    return BillExport(b.canonical, b.unit_signature, b.fiscal_signature, b.qr_signature,
                      UNIT.public.point)  # fmt: skip


def pdf_file(tmp: Path, export: BillExport) -> Path:
    b = signed_bill()
    v = view_of(b, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public)
    path = tmp / "bill.pdf"
    path.write_bytes(render_pdf(v, export))
    return path


def verify(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", *args, "--fiscal-key", KEY])
    return result.exit_code, result.output


def test_genuine_pdf_export_and_qr_pass(tmp_path: Path) -> None:
    b = signed_bill()
    code, out = verify("pdf", str(pdf_file(tmp_path, export_of(b))))
    assert code == 0 and "AUTHENTIC" in out and "44060119/0010535766" in out, out
    (tmp_path / "bill.json").write_bytes(export_of(b).to_json())
    assert verify("export", str(tmp_path / "bill.json"))[0] == 0
    qr = view_of(b, NAMES, unit_key=None, fiscal_key=None).qr_text
    code, out = verify("qr", qr, "--json")
    assert code == 0 and '"authentic": true' in out


def test_forged_or_altered_bills_fail(tmp_path: Path) -> None:
    b = signed_bill()
    forged = replace(export_of(b), unit_signature=SigningKey.generate().sign(b.canonical))
    code, out = verify("pdf", str(pdf_file(tmp_path, forged)))
    assert code == 1 and "NOT AUTHENTIC" in out and "unit signature:     invalid" in out
    altered = replace(export_of(b), canonical=b.canonical.replace(b"a1b2c3", b"a1b2c4"))
    (tmp_path / "altered.json").write_bytes(altered.to_json())
    assert verify("export", str(tmp_path / "altered.json"))[0] == 1
    # The platform's key of another platform: nothing it signed verifies.
    other = SigningKey.generate().public.point.hex()
    result = runner.invoke(app, ["verify", "export", str(tmp_path / "altered.json"),
                                 "--fiscal-key", other])  # fmt: skip
    assert result.exit_code == 1


def test_tampered_qr_fails_and_garbage_is_refused() -> None:
    qr = view_of(signed_bill(), NAMES, unit_key=None, fiscal_key=None).qr_text
    assert verify("qr", qr.replace(":338.44:", ":3.44:"))[0] == 1
    assert verify("qr", "hello")[0] == 2


def test_a_pdf_without_an_export_is_refused(tmp_path: Path) -> None:
    b = signed_bill()
    reader = PdfReader(pdf_file(tmp_path, export_of(b)))
    writer = PdfWriter()
    for p in reader.pages:
        writer.add_page(p)
    buf = io.BytesIO()
    writer.write(buf)
    assert EXPORT_NAME not in PdfReader(io.BytesIO(buf.getvalue())).attachments
    (tmp_path / "bare.pdf").write_bytes(buf.getvalue())
    code, _ = verify("pdf", str(tmp_path / "bare.pdf"))
    assert code == 2
