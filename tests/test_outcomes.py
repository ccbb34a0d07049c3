"""What an unfinished bill tells its caller (engine.outcome.outcome_error)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from engine.errors import FailedPrecondition, Unavailable
from engine.model import BillStatus
from engine.outcome import outcome_error
from engine.pipeline import Work

WORK = Work(
    bill_id=1, unit_code="U", bus_no="B1", bus_type="02", place_code="001",
    bill_code="44060119", bill_no="0000000001", check_code="abcdef", total_fen=100,
    issued_at=datetime.now(UTC), canonical=b"{}", canonical_version="ebill-canonical/1",
    status=BillStatus.PENDING_COUNTERSIGN, unit_signature=b"sig",
)  # fmt: skip


def test_pending_is_an_answer_not_an_error() -> None:
    away = replace(WORK, deferred="fiscal platform unavailable (DEADLINE_EXCEEDED)")
    assert outcome_error(away) is None
    # The wording of a reason never decides the outcome; the rejected flag does.
    worded = replace(WORK, deferred="fiscal platform unavailable (invalid response)")
    assert outcome_error(worded) is None


def test_rejection_fails_the_precondition() -> None:
    rejected = replace(WORK, deferred="fiscal platform rejected: NOT_GRANTED x", rejected=True)
    err = outcome_error(rejected)
    assert isinstance(err, FailedPrecondition) and "NOT_GRANTED" in err.message


def test_unsigned_bill_is_unavailable_and_says_how_to_finish_it() -> None:
    held = replace(WORK, status=BillStatus.RESERVED, unit_signature=b"", deferred="signer away")
    err = outcome_error(held)
    assert isinstance(err, Unavailable) and "same request again" in err.message
