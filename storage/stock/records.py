"""What stock storage hands out: frozen records, never asyncpg rows or dicts.

Numbers are :class:`~engine.numbers.BillNo` / :class:`~engine.numbers.NumberRange`
and statuses the StrEnums of :mod:`engine.statuses`, so callers above storage
neither format ten digits nor compare bare words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from engine.numbers import BillNo, NumberRange
from engine.statuses import (
    ApplicationStatus,
    Medium,
    ReturnStatus,
    SegmentStatus,
    SubmissionOutcome,
    WriteOffStatus,
)

__all__ = [
    "Alert",
    "AuditFigure",
    "AutoDistributed",
    "GrantApplication",
    "GrantDecision",
    "Identity",
    "Moved",
    "SegmentView",
    "StockReturn",
    "WriteOff",
    "WriteOffFigures",
    "WriteOffSubmission",
    "ranges",
]

_HELD = (SegmentStatus.ENABLED, SegmentStatus.DISABLED, SegmentStatus.RETURNING)


def ranges(pairs: Iterable[Sequence[int]]) -> tuple[NumberRange, ...]:
    """Stored ``[[start, end], ...]`` (jsonb, or tuples) as number ranges."""
    return tuple(NumberRange.of(int(p[0]), int(p[1])) for p in pairs)


def _pairs(rs: Iterable[NumberRange]) -> list[list[int]]:
    return [[int(r.start), int(r.end)] for r in rs]


@dataclass(frozen=True, slots=True)
class SegmentView:
    id: int
    place_code: str  # "" for the bill office
    bill_code: str
    start_no: BillNo
    end_no: BillNo
    # An int, not a BillNo: it runs one past end_no once the segment is used up,
    # which for a segment ending at 9999999999 is eleven digits.
    next_no: int
    status: SegmentStatus
    grant_id: str
    received_at: datetime

    @property
    def remaining(self) -> int:
        return self.end_no - self.next_no + 1 if self.status in _HELD else 0


@dataclass(frozen=True, slots=True)
class Identity:
    """The stock identity of one bill code of a unit, in numbers."""

    bill_code: str
    granted: int
    issued: int
    available: int
    voided: int
    returned: int
    # Numbers used before go-live, entered with the opening stock (no bill rows here).
    issued_before_go_live: int
    bills: int

    @property
    def balanced(self) -> bool:
        return self.granted == self.issued + self.available + self.voided + self.returned


@dataclass(frozen=True, slots=True)
class GrantApplication:
    """A grant application (赋码申请); the range is known once granted."""

    id: int
    unit_code: str
    bill_code: str
    count: int
    reason: str
    status: ApplicationStatus
    fiscal_ref: str  # "" until submitted
    grant_id: str  # "" until granted
    granted: NumberRange | None
    reject_reason: str
    created_by: str

    @classmethod
    def of(cls, r: asyncpg.Record) -> GrantApplication:
        return cls(
            id=r["id"],
            unit_code=r["unit_code"],
            bill_code=r["bill_code"],
            count=r["count"],
            reason=r["reason"],
            status=ApplicationStatus(r["status"]),
            fiscal_ref=r["fiscal_ref"] or "",
            grant_id=r["grant_id"] or "",
            granted=(
                NumberRange.of(r["start_no"], r["end_no"]) if r["start_no"] is not None else None
            ),
            reject_reason=r["reject_reason"],
            created_by=r["created_by"],
        )


@dataclass(frozen=True, slots=True)
class GrantDecision:
    """The platform's answer on one submitted application."""

    fiscal_ref: str
    status: str  # "granted", "rejected", or still pending (ignored)
    grant_id: str
    numbers: NumberRange | None
    reason: str


@dataclass(frozen=True, slots=True)
class Moved:
    """Numbers of one bill code that went to an issuing point."""

    bill_code: str
    ranges: tuple[NumberRange, ...]


@dataclass(frozen=True, slots=True)
class AutoDistributed:
    unit_code: str
    place_code: str
    bill_code: str
    count: int


@dataclass(frozen=True, slots=True)
class StockReturn:
    id: int
    unit_code: str
    place_code: str | None  # None: the bill office returns to the platform
    bill_code: str
    numbers: NumberRange
    status: ReturnStatus

    @classmethod
    def of(cls, r: asyncpg.Record) -> StockReturn:
        return cls(
            id=r["id"],
            unit_code=r["unit_code"],
            place_code=r["place_code"],
            bill_code=r["bill_code"],
            numbers=NumberRange.of(r["start_no"], r["end_no"]),
            status=ReturnStatus(r["status"]),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """A low-stock warning (库存预警) as kept in the system."""

    id: int
    unit_code: str
    place_code: str
    bill_code: str
    threshold: int
    available: int
    message: str
    email: str
    created_at: datetime
    read: bool
    emailed: bool

    @classmethod
    def of(cls, r: asyncpg.Record) -> Alert:
        return cls(
            id=r["id"],
            unit_code=r["unit_code"],
            place_code=r["place_code"],
            bill_code=r["bill_code"],
            threshold=r["threshold"],
            available=r["available"],
            message=r["message"],
            email=r["email"],
            created_at=r["created_at"],
            read=r["read_at"] is not None,
            emailed=r["emailed_at"] is not None,
        )


@dataclass(frozen=True, slots=True)
class WriteOffFigures:
    """What a write-off declares for its period, computed from the data."""

    issued_count: int
    issued_fen: int
    red_count: int
    red_fen: int
    red_flushed_count: int
    unfinished: int  # bills of the period not yet countersigned
    used: tuple[NumberRange, ...]
    voided: tuple[NumberRange, ...]
    voided_count: int
    printed_count: int

    def to_json(self) -> dict[str, Any]:
        """The stored form (write_offs.figures); keys and shapes as always stored."""
        return {
            "issued_count": self.issued_count,
            "issued_fen": self.issued_fen,
            "red_count": self.red_count,
            "red_fen": self.red_fen,
            "red_flushed_count": self.red_flushed_count,
            "unfinished": self.unfinished,
            "used": _pairs(self.used),
            "voided": _pairs(self.voided),
            "voided_count": self.voided_count,
            "printed_count": self.printed_count,
        }

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> WriteOffFigures:
        return cls(
            issued_count=int(f["issued_count"]),
            issued_fen=int(f["issued_fen"]),
            red_count=int(f["red_count"]),
            red_fen=int(f["red_fen"]),
            red_flushed_count=int(f["red_flushed_count"]),
            unfinished=int(f.get("unfinished") or 0),
            used=ranges(f["used"]),
            voided=ranges(f["voided"]),
            voided_count=int(f["voided_count"]),
            printed_count=int(f["printed_count"]),
        )


@dataclass(frozen=True, slots=True)
class WriteOffSubmission:
    outcome: SubmissionOutcome
    reason: str
    submitted_by: str
    submitted_at: datetime

    @classmethod
    def of(cls, r: asyncpg.Record) -> WriteOffSubmission:
        return cls(
            outcome=SubmissionOutcome(r["outcome"]),
            reason=r["reason"],
            submitted_by=r["submitted_by"],
            submitted_at=r["submitted_at"],
        )


@dataclass(frozen=True, slots=True)
class WriteOff:
    """A write-off declaration (核销申报) with its submissions, oldest first."""

    id: int
    unit_code: str
    medium: Medium
    code: str
    period_from: date
    period_to: date
    status: WriteOffStatus
    figures: WriteOffFigures
    lost: tuple[NumberRange, ...]
    remark: str
    reject_reason: str
    fiscal_ref: str
    submissions: tuple[WriteOffSubmission, ...] = ()

    @property
    def lost_count(self) -> int:
        return sum(r.count for r in self.lost)

    @classmethod
    def of(cls, r: asyncpg.Record, subs: Iterable[asyncpg.Record] = ()) -> WriteOff:
        return cls(
            id=r["id"],
            unit_code=r["unit_code"],
            medium=Medium(r["medium"]),
            code=r["code"],
            period_from=r["period_from"],
            period_to=r["period_to"],
            status=WriteOffStatus(r["status"]),
            figures=WriteOffFigures.from_json(r["figures"]),
            lost=ranges(r["lost"]),
            remark=r["remark"],
            reject_reason=r["reject_reason"],
            fiscal_ref=r["fiscal_ref"] or "",
            submissions=tuple(WriteOffSubmission.of(s) for s in subs),
        )


@dataclass(frozen=True, slots=True)
class AuditFigure:
    """One bill code's line of an audit report (审验): what was issued in the period,
    and how many of those bills are not yet archived."""

    bill_code: str
    count: int
    total_fen: int
    unarchived: int

    def to_json(self) -> dict[str, Any]:
        return {
            "bill_code": self.bill_code,
            "count": self.count,
            "total_fen": self.total_fen,
            "unarchived": self.unarchived,
        }
