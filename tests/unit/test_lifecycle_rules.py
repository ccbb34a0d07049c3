"""The pure lifecycle rules and red-document arithmetic (no I/O)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from engine.canonical import canonical_bytes
from engine.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from engine.lifecycle import (
    BillState,
    PaperStatus,
    check_convert,
    check_own,
    check_printed,
    check_red_flush,
    check_refund,
    negate_amount,
    red_prepared,
)
from engine.model import BillStatus, Reservation
from engine.serde import input_to_dict
from engine.stock import compress_ranges
from engine.validation import validate
from tests.factories import bill, catalog

STATE = BillState(
    bill_id=7, unit_code="U", place_code="001", bill_code="44060119", bill_no="0000000042",
    status=BillStatus.ISSUED, total_fen=10_000, bill_kind="outpatient", bus_type="02",
    origin="engine", is_red=False, red_by="", paper=PaperStatus.NONE, paper_code="",
    paper_no="", converted=False,
)  # fmt: skip


def test_negate_amount() -> None:
    assert negate_amount("12.30") == "-12.30"
    assert negate_amount("0.00") == "0.00"
    assert negate_amount("-5.01") == "5.01"


def test_red_flush_rules() -> None:
    assert check_red_flush(STATE, void_paper=False) is None
    flushed = replace(STATE, status=BillStatus.RED_FLUSHED, red_by="44060119/0000000050")
    err = check_red_flush(flushed, void_paper=True)
    assert isinstance(err, FailedPrecondition) and "0000000050" in err.message
    assert isinstance(check_red_flush(replace(STATE, is_red=True), void_paper=False), Exception)
    pending = replace(STATE, status=BillStatus.PENDING_COUNTERSIGN)
    assert isinstance(check_red_flush(pending, void_paper=False), FailedPrecondition)
    printed = replace(STATE, paper=PaperStatus.PRINTED, paper_code="1", paper_no="2")
    err = check_red_flush(printed, void_paper=False)
    assert err is not None and err.field == "void_paper"
    assert check_red_flush(printed, void_paper=True) is None
    voided = replace(printed, paper=PaperStatus.VOIDED)
    assert check_red_flush(voided, void_paper=False) is None


def test_refund_rules() -> None:
    check_refund(STATE, 3_000, 7_000)
    check_refund(STATE, 10_000, None)
    with pytest.raises(InvalidArgument) as info:
        check_refund(STATE, 10_001, None)
    assert info.value.field == "refund_amount" and "100.00" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        check_refund(STATE, 3_000, 6_999)
    assert info.value.field == "remainder.total_amount"
    with pytest.raises(InvalidArgument) as info:
        check_refund(STATE, 3_000, None)
    assert info.value.field == "remainder"
    with pytest.raises(InvalidArgument):
        check_refund(STATE, 10_000, 0)
    with pytest.raises(InvalidArgument):
        check_refund(STATE, 0, 10_000)


def test_paper_rules_and_ownership() -> None:
    check_convert(STATE)
    with pytest.raises(FailedPrecondition):
        check_convert(replace(STATE, converted=True, paper=PaperStatus.VOIDED))
    with pytest.raises(FailedPrecondition):
        check_convert(replace(STATE, is_red=True))
    with pytest.raises(FailedPrecondition):
        check_printed(STATE)
    check_printed(replace(STATE, paper=PaperStatus.PRINTED))
    check_own(STATE, "U", "001")
    with pytest.raises(PermissionDenied):
        check_own(STATE, "U", "002")


def test_red_document_negates_every_amount_and_names_the_original() -> None:
    valid = validate(bill(3), catalog())
    res = Reservation("44060119", "0000000042", "abc123", datetime(2026, 11, 23, tzinfo=UTC))
    canonical = canonical_bytes(valid, res)
    state = replace(STATE, total_fen=valid.total_fen)
    p = red_prepared(
        state, canonical, input_to_dict(valid.source), bill_code="44060119", bus_no="R1",
        bus_time=datetime(2026, 11, 24, 9, 30), place_code="001", operator="clerk",
        reason="refund", void_paper=False, op="red_flush",
    )  # fmt: skip
    assert p.total_fen == -valid.total_fen and p.red_of == 7
    assert sum(a for *_, a, _ in p.charge_rows) == -valid.total_fen
    assert sum(a for _, a in p.channel_rows) == -valid.total_fen
    doc = p.document
    original = json.loads(canonical)
    assert doc["red_of"] == {
        "bill_code": "44060119",
        "bill_no": "0000000042",
        "check_code": "abc123",
    }
    assert doc["total_amount"] == negate_amount(original["total_amount"])
    assert [c["amt"] for c in doc["charge_items"]] == [
        negate_amount(c["amt"]) for c in original["charge_items"]
    ]
    assert doc["bus_no"] == "R1" and doc["bus_time"] == "20261124093000000"
    assert not set(doc) & {"bill_no", "check_code", "issued_at"}
    assert p.request["total_amount"] == doc["total_amount"]


def test_compress_ranges() -> None:
    assert compress_ranges([]) == []
    assert compress_ranges([5, 1, 2, 3, 7, 7, 8]) == [(1, 3), (5, 5), (7, 8)]
