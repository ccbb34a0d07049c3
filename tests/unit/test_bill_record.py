"""One field list for a stored bill: Work and IssuedBill share BillRecord (pure)."""

from __future__ import annotations

import pickle
from dataclasses import fields, replace
from datetime import UTC, datetime

from engine.model import (
    RECORD_FIELDS,
    BillInput,
    BillRecord,
    BillStatus,
    IssuedBill,
    record_values,
)
from engine.pipeline import Work
from engine.serde import input_to_dict
from engine.statuses import PaperStatus
from storage.bill_rows import record_of, row_to_bill, row_to_work
from storage.personal import seal_bill
from tests.factories import RING

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

WORK = Work(
    bill_id=7, unit_code="U", bus_no="B1", bus_type="02", place_code="001",
    bill_code="44060119", bill_no="0000000001", check_code="abcdef", total_fen=100,
    issued_at=AT, canonical=b"{}", canonical_version="ebill-canonical/1",
    status=BillStatus.ISSUED, unit_signature=b"u", fiscal_signature=b"f", bill_kind="outpatient",
    qr_signature=b"q",
    countersigned_at="2026-11-23T08:00:01+00:00", deferred="", rejected=False,
)  # fmt: skip

# A bills row as asyncpg returns it (SELECT b.* plus BILL_SELECT's extra columns),
# its request and canonical bytes sealed as storage.personal seals them.
_SEALED = seal_bill(
    RING, 7, input_to_dict(BillInput(unit_code="U", bus_no="B1")), b"{}",
    id_card="", tel="", card="",
)  # fmt: skip
ROW: dict[str, object] = {
    "id": 7, "unit_code": "U", "bus_no": "B1", "bus_type": "02", "place_code": "001",
    "bill_code": "44060119", "bill_no": "0000000001", "check_code": "abcdef",
    "status": "issued", "total_fen": 100, "issued_at": AT,
    "canonical_sealed": _SEALED.canonical_sealed,
    "canonical_version": "ebill-canonical/1", "unit_signature": b"u", "fiscal_signature": b"f",
    "bill_kind": "outpatient", "qr_signature": b"q",
    "countersigned_at": datetime(2026, 11, 23, 8, 0, 1, tzinfo=UTC),
    "request_sealed": _SEALED.request_sealed, "paper_code": "12345678  ",
    "paper_no": "0000000009", "origin": "engine", "operator": "cashier",
    "red_of_key": "", "red_by_key": "44060119/0000000002", "replaces_key": "",
    "paper_status": "printed",
}  # fmt: skip


def test_both_views_start_with_the_record_fields_in_order() -> None:
    for cls in (Work, IssuedBill):
        assert issubclass(cls, BillRecord)
        names = tuple(f.name for f in fields(cls))
        assert names[: len(RECORD_FIELDS)] == RECORD_FIELDS
    # Neither view repeats a record field under its own definition.
    assert not set(RECORD_FIELDS) & set(Work.__slots__) - set(BillRecord.__slots__)
    assert not set(RECORD_FIELDS) & set(IssuedBill.__slots__) - set(BillRecord.__slots__)


def test_issued_carries_every_record_field_and_nothing_of_the_trip() -> None:
    bill = WORK.issued()
    assert record_values(bill) == record_values(WORK)
    assert (bill.paper_status, bill.source, bill.origin) == (PaperStatus.NONE, None, "engine")
    assert replace(WORK, replayed=True).issued().replayed


def test_work_and_bill_pickle_as_their_fields() -> None:
    for value in (WORK, WORK.issued()):
        assert pickle.loads(pickle.dumps(value)) == value
    # compact_pickle: the class and the positional field values, no state dict.
    assert WORK.__reduce__() == (Work, tuple(getattr(WORK, f.name) for f in fields(Work)))


def test_a_row_maps_onto_the_record_by_field_name() -> None:
    record = record_of(ROW, RING)
    assert tuple(record) == RECORD_FIELDS
    assert record["bill_id"] == 7 and record["status"] is BillStatus.ISSUED
    assert (
        record_of({**ROW, "unit_signature": None, "fiscal_signature": None}, RING)["unit_signature"]
        == b""
    )


def test_row_to_work_and_row_to_bill_agree_with_issued() -> None:
    work = row_to_work(ROW, RING, replayed=True)
    assert work == replace(WORK, replayed=True)
    bill = row_to_bill(ROW, RING)
    assert record_values(bill) == record_values(WORK)
    assert (bill.paper_code, bill.paper_status, bill.red_by) == (
        "12345678",
        PaperStatus.PRINTED,
        "44060119/0000000002",
    )
    assert bill.source is not None and bill.source.bus_no == "B1"
    assert row_to_bill({**ROW, "paper_status": None}, RING).paper_status is PaperStatus.NONE
