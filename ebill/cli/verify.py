"""`ebill verify pdf|qr|export`: check a bill offline, as any holder can.

A rendered PDF carries the bill's export as an attached file (ebill-export.json:
the canonical bytes, the unit signature, the platform's countersignature and QR
signature, the unit's public key); an export can also be a file of its own; a QR
payload is the text of the code on a bill or notice slip (or the verification
URL holding it). Each signature is checked against the fiscal platform's public
key you trust: ``--fiscal-key`` (a file with the PEM key or the hex point, or the
hex itself), by default EBILL_FISCAL_PUBLIC_KEY_FILE. Exit status 0: authentic;
1: a signature failed or is missing; 2: the input could not be read.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import typer
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from config.settings import load, read_public_key
from engine.money import format_fen
from engine.qr import facts_of_canonical, parse
from engine.sm2 import VerifyingKey
from engine.verification import BillExport, Checks, Verdict
from usecases.rendering import EXPORT_NAME

__all__ = ["app"]

app = typer.Typer(
    help="Verify a bill offline: a PDF, a QR payload or an export.", no_args_is_help=True
)

FiscalKey = Annotated[
    str,
    typer.Option(
        "--fiscal-key",
        help="The platform's public key: a file (PEM or hex) or the hex point itself."
        " Default: EBILL_FISCAL_PUBLIC_KEY_FILE.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _fiscal_key(given: str) -> VerifyingKey:
    text = given or load().fiscal_public_key_file
    if not text:
        raise _fail("no fiscal public key: give --fiscal-key or set EBILL_FISCAL_PUBLIC_KEY_FILE")
    try:
        if Path(text).is_file():
            return VerifyingKey(read_public_key(text))
        return VerifyingKey(bytes.fromhex(text))
    except (ValueError, SystemExit) as exc:
        raise _fail(f"--fiscal-key: {exc}") from exc


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _report(checks: Checks, facts: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {"authentic": checks.ok, **facts,
                 "unit_signature": str(checks.unit_signature),
                 "countersignature": str(checks.countersignature),
                 "qr_signature": str(checks.qr_signature)},
                ensure_ascii=False,
            )
        )  # fmt: skip
    else:
        for k, v in facts.items():
            typer.echo(f"{k}: {v}")
        typer.echo(f"unit signature:     {checks.unit_signature}")
        typer.echo(f"countersignature:   {checks.countersignature}")
        typer.echo(f"QR signature:       {checks.qr_signature}")
        typer.echo("AUTHENTIC" if checks.ok else "NOT AUTHENTIC")
    raise typer.Exit(0 if checks.ok else 1)


def _check_export(export: BillExport, fiscal_key: str, as_json: bool) -> None:
    key = _fiscal_key(fiscal_key)
    try:
        f = facts_of_canonical(export.canonical)
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(f"the canonical bytes are not a bill: {exc}") from exc
    facts: dict[str, object] = {
        "bill": f"{f.bill_code}/{f.bill_no}",
        "check_code": f.check_code,
        "amount": format_fen(f.total_fen),
        "issue_date": f.issue_date.isoformat(),
    }
    _report(export.check(key), facts, as_json)


@app.command("pdf")
def verify_pdf(
    path: Annotated[Path, typer.Argument(help="A bill PDF rendered by the engine.")],
    fiscal_key: FiscalKey = "",
    as_json: AsJson = False,
) -> None:
    """Check the bill a PDF carries (its attached export)."""
    try:
        reader = PdfReader(io.BytesIO(path.read_bytes()))
        attached = reader.attachments.get(EXPORT_NAME)
    except (OSError, PdfReadError, ValueError) as exc:
        raise _fail(f"{path}: not a readable PDF: {exc}") from exc
    if not attached:
        raise _fail(f"{path}: carries no {EXPORT_NAME}: not a bill PDF from this engine")
    try:
        export = BillExport.from_json(attached[0])
    except ValueError as exc:
        raise _fail(f"{path}: {exc}") from exc
    _check_export(export, fiscal_key, as_json)


@app.command("export")
def verify_export(
    path: Annotated[Path, typer.Argument(help="An exported bill (ebill-export/1 JSON).")],
    fiscal_key: FiscalKey = "",
    as_json: AsJson = False,
) -> None:
    """Check an exported bill."""
    try:
        export = BillExport.from_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise _fail(f"{path}: {exc}") from exc
    _check_export(export, fiscal_key, as_json)


@app.command("qr")
def verify_qr(
    payload: Annotated[str, typer.Argument(help="The QR text (or the verification URL).")],
    fiscal_key: FiscalKey = "",
    as_json: AsJson = False,
) -> None:
    """Check a QR payload's signature: the facts it states are the platform's."""
    key = _fiscal_key(fiscal_key)
    try:
        qr = parse(payload)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if not qr.signature:
        verdict = Verdict.ABSENT
    else:
        verdict = Verdict.VALID if qr.verify(key) else Verdict.INVALID
    f = qr.facts
    facts: dict[str, object] = {
        "bill": f"{f.bill_code}/{f.bill_no}",
        "check_code": f.check_code,
        "amount": format_fen(f.total_fen),
        "issue_date": f.issue_date.isoformat(),
    }
    if as_json:
        typer.echo(json.dumps({"authentic": verdict is Verdict.VALID, **facts,
                               "qr_signature": str(verdict)}, ensure_ascii=False))  # fmt: skip
    else:
        for k, v in facts.items():
            typer.echo(f"{k}: {v}")
        typer.echo(f"QR signature:       {verdict}")
        typer.echo("AUTHENTIC" if verdict is Verdict.VALID else "NOT AUTHENTIC")
    raise typer.Exit(0 if verdict is Verdict.VALID else 1)
