"""The bill state machine, and the pure steps that move a bill by it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from engine.errors import FailedPrecondition
from engine.lifecycle import BillState, check_red_flush
from engine.model import BillStatus
from engine.pipeline import Work, finish
from engine.state import TRANSITIONS, may_become
from engine.statuses import PaperStatus

S = BillStatus

WORK = Work(
    bill_id=1, unit_code="U", bus_no="B1", bus_type="02", place_code="001",
    bill_code="44060119", bill_no="0000000001", check_code="abcdef", total_fen=100,
    issued_at=datetime.now(UTC), canonical=b"{}", canonical_version="ebill-canonical/1",
    status=S.RESERVED,
)  # fmt: skip

STATE = BillState(
    bill_id=1, unit_code="U", place_code="001", bill_code="44060119", bill_no="0000000001",
    status=S.ISSUED, total_fen=100, bill_kind="outpatient", bus_type="02", origin="engine",
    is_red=False, red_by="", paper=PaperStatus.NONE, paper_code="", paper_no="", converted=False,
)  # fmt: skip


def test_every_status_has_its_successors_and_none_goes_back() -> None:
    assert set(TRANSITIONS) == set(S)
    assert may_become(S.RESERVED, S.PENDING_COUNTERSIGN) and may_become(S.RESERVED, S.ISSUED)
    assert may_become(S.PENDING_COUNTERSIGN, S.ISSUED) and may_become(S.ISSUED, S.RED_FLUSHED)
    assert not may_become(S.ISSUED, S.PENDING_COUNTERSIGN)
    assert not may_become(S.PENDING_COUNTERSIGN, S.RESERVED)
    assert not any(may_become(S.RED_FLUSHED, s) for s in S)
    assert not any(may_become(s, s) for s in S)


@pytest.mark.parametrize(
    ("status", "unit", "fiscal", "expected"),
    [
        (S.RESERVED, b"", b"", S.RESERVED),
        (S.RESERVED, b"u", b"", S.PENDING_COUNTERSIGN),
        (S.RESERVED, b"u", b"f", S.ISSUED),
        (S.PENDING_COUNTERSIGN, b"u", b"", S.PENDING_COUNTERSIGN),
        (S.PENDING_COUNTERSIGN, b"u", b"f", S.ISSUED),
        (S.ISSUED, b"u", b"f", S.ISSUED),
        # A cancelled bill replayed through the pipeline stays cancelled.
        (S.RED_FLUSHED, b"u", b"f", S.RED_FLUSHED),
        (S.ISSUED, b"u", b"", S.ISSUED),
    ],
)
def test_finish_moves_a_bill_as_far_as_its_signatures_and_the_machine_allow(
    status: BillStatus, unit: bytes, fiscal: bytes, expected: BillStatus
) -> None:
    work = replace(WORK, status=status, unit_signature=unit, fiscal_signature=fiscal)
    done = finish(work)
    assert done.status is expected
    if expected is status:
        assert done is work


@pytest.mark.parametrize("status", [S.RESERVED, S.PENDING_COUNTERSIGN])
def test_only_an_issued_bill_may_be_red_flushed(status: BillStatus) -> None:
    assert check_red_flush(STATE, void_paper=False) is None
    err = check_red_flush(replace(STATE, status=status), void_paper=False)
    assert isinstance(err, FailedPrecondition) and "only an issued bill" in err.message
