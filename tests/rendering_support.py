"""Signed bills built in memory for rendering tests: the same canonical bytes and
signatures the pipeline makes, signed here with keys the test holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from engine.canonical import canonical_bytes, countersign_message
from engine.lifecycle import red_document
from engine.model import BillStatus, IssuedBill, Reservation
from engine.qr import facts_of_canonical
from engine.sm2 import SigningKey
from engine.validation import validate
from storage.catalog import PAY_CHANNELS
from tests.factories import bill as bill_input
from tests.factories import catalog
from usecases import demo
from usecases.rendering import Names

__all__ = ["FISCAL", "NAMES", "UNIT", "red_of", "signed_bill"]

# Fixed secrets: the seals print the keys' fingerprints, the golden image with them.
UNIT = SigningKey.from_secret(0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF)
FISCAL = SigningKey.from_secret(0x2345678901BCDEF02345678901BCDEF02345678901BCDEF02345678901BCDEF0)
NAMES = Names(
    unit_name=demo.UNIT_NAME,
    bill_name="医疗门诊收费票据（电子）",
    pay_channels=tuple(PAY_CHANNELS.items()),
)
AT = datetime(2026, 11, 23, 2, 30, 0, tzinfo=UTC)


def _signed(
    canonical: bytes, bill_no: str, check_code: str, total_fen: int, **kw: object
) -> IssuedBill:
    unit_sig = UNIT.sign(canonical)
    return IssuedBill(
        bill_id=int(bill_no),
        unit_code=demo.UNIT_CODE,
        bus_no=json.loads(canonical)["bus_no"],
        bus_type="02",
        place_code="001",
        bill_code="44060119",
        bill_no=bill_no,
        check_code=check_code,
        status=BillStatus.ISSUED,
        total_fen=total_fen,
        issued_at=AT,
        canonical=canonical,
        canonical_version="ebill-canonical/1",
        unit_signature=unit_sig,
        fiscal_signature=FISCAL.sign(countersign_message(canonical, unit_sig)),
        bill_kind="outpatient",
        qr_signature=FISCAL.sign(facts_of_canonical(canonical).message),
        **kw,  # type: ignore[arg-type]
    )


def signed_bill(
    seq: int = 7, bill_no: str = "0010535766", check_code: str = "a1b2c3"
) -> IssuedBill:
    """An issued outpatient bill, unit-signed and countersigned."""
    valid = validate(bill_input(seq), catalog())
    res = Reservation("44060119", bill_no, check_code, AT)
    return _signed(canonical_bytes(valid, res), bill_no, check_code, valid.total_fen)


def red_of(original: IssuedBill, bill_no: str = "0010535767") -> IssuedBill:
    """The red bill cancelling ``original``."""
    doc = red_document(
        json.loads(original.canonical),
        bus_no="RED" + original.bus_no,
        bus_time="20261123110000000",
        place_code="001",
        operator="收费员01",
        reason="退费冲红",
    )
    full = {**doc, "bill_code": "44060119", "bill_no": bill_no, "check_code": "d4e5f6",
            "issued_at": "2026-11-23T03:00:00.000Z"}  # fmt: skip
    canonical = json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return _signed(canonical, bill_no, "d4e5f6", -original.total_fen,
                   red_of=f"{original.bill_code}/{original.bill_no}")  # fmt: skip
