"""Masking of personal data for callers who may not read it (engine/masking.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.masking import (
    mask_card,
    mask_email,
    mask_id_card,
    mask_payer,
    mask_tel,
    masked_bill,
    payer_only,
)
from engine.model import BillInput, BillStatus, IssuedBill, PayerInput


def test_the_common_shapes() -> None:
    assert mask_id_card("110101199003071234") == "110***********1234"
    assert mask_id_card("11010119900307123X") == "110***********123X"
    assert mask_id_card("110101900307123") == "110********7123"  # 15 characters
    assert mask_tel("13800138000") == "138****8000"
    assert mask_tel("07597750000") == "075****0000"
    assert mask_email("zhang.san@example.com") == "z***@example.com"
    assert mask_email("a@example.com") == "***@example.com"
    assert mask_card("MC77889911") == "******9911"
    # Short or empty values never show more than their last character.
    assert mask_tel("12345") == "****5" and mask_id_card("") == "" and mask_tel("12") == "**"


def test_a_masked_bill_keeps_no_full_value_and_no_canonical_bytes() -> None:
    payer = PayerInput(
        name="张三", id_card_no="110101199003071234", tel="13800138000", email="z@x.cn",
        card_no="MC77889911",
    )  # fmt: skip
    bill = IssuedBill(
        bill_id=1, unit_code="U", bus_no="B", bus_type="02", place_code="001",
        bill_code="44060119", bill_no="0000000001", check_code="abc", status=BillStatus.ISSUED,
        total_fen=1, issued_at=datetime.now(UTC), canonical=b'{"payer":"110101199003071234"}',
        canonical_version="v", unit_signature=b"u", fiscal_signature=b"f",
        source=BillInput(unit_code="U", payer=payer, remark="kept"),
    )  # fmt: skip
    masked = masked_bill(bill)
    assert masked.source is not None and masked.source.payer == mask_payer(payer)
    assert masked.source.payer.name == "张三" and masked.source.remark == "kept"
    assert (masked.canonical, masked.unit_signature, masked.fiscal_signature) == (b"", b"", b"")
    listed = payer_only(bill)
    assert listed.source == BillInput(payer=payer) and listed.canonical == b""
