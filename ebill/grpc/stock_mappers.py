"""Stock records to StockService protobuf messages.

At the edge rather than in wire/: the records are storage's and the use cases'
(wire/ sits below both and may not import them).
"""

from __future__ import annotations

from datetime import date

from engine.money import format_fen
from engine.numbers import DIGITS, NumberRange
from protos.ebill.v1 import stock_pb2
from storage.stock.records import Alert, GrantApplication, Identity, Moved, SegmentView, WriteOff
from usecases.stock.writeoff import AuditReport

__all__ = [
    "alert_pb",
    "application_pb",
    "applications_pb",
    "audit_report_pb",
    "identity_pb",
    "ranges_pb",
    "segment_pb",
    "write_off_pb",
]


def _day(d: date) -> str:
    return d.strftime("%Y%m%d")


def ranges_pb(moved: Moved) -> stock_pb2.Ranges:
    return stock_pb2.Ranges(
        ranges=[
            stock_pb2.Range(bill_code=moved.bill_code, start_no=str(r.start), end_no=str(r.end))
            for r in moved.ranges
        ]
    )


def _nr(r: NumberRange) -> stock_pb2.NumberRange:
    return stock_pb2.NumberRange(start_no=str(r.start), end_no=str(r.end))


def application_pb(a: GrantApplication) -> stock_pb2.GrantApplication:
    return stock_pb2.GrantApplication(
        id=a.id,
        bill_code=a.bill_code,
        count=a.count,
        status=a.status,
        fiscal_ref=a.fiscal_ref,
        start_no=str(a.granted.start) if a.granted else "",
        end_no=str(a.granted.end) if a.granted else "",
        reject_reason=a.reject_reason,
        reason=a.reason,
        created_by=a.created_by,
    )


def applications_pb(apps: list[GrantApplication]) -> stock_pb2.GrantApplications:
    return stock_pb2.GrantApplications(applications=[application_pb(a) for a in apps])


def segment_pb(s: SegmentView) -> stock_pb2.Segment:
    return stock_pb2.Segment(
        id=s.id,
        place_code=s.place_code,
        bill_code=s.bill_code,
        start_no=str(s.start_no),
        end_no=str(s.end_no),
        # next_no may run one past 9999999999 (a used-up last segment): zfill, not BillNo.
        next_no=str(s.next_no).zfill(DIGITS),
        status=s.status,
        remaining=s.remaining,
        received_at=s.received_at.isoformat(),
    )


def identity_pb(i: Identity) -> stock_pb2.IdentityLine:
    return stock_pb2.IdentityLine(
        bill_code=i.bill_code,
        granted=i.granted,
        issued=i.issued,
        available=i.available,
        voided=i.voided,
        returned=i.returned,
        balanced=i.balanced,
        issued_before_go_live=i.issued_before_go_live,
        bills=i.bills,
    )


def alert_pb(a: Alert) -> stock_pb2.Alert:
    return stock_pb2.Alert(
        id=a.id,
        place_code=a.place_code,
        bill_code=a.bill_code,
        threshold=a.threshold,
        available=a.available,
        message=a.message,
        created_at=a.created_at.isoformat(),
        read=a.read,
        emailed=a.emailed,
    )


def write_off_pb(w: WriteOff) -> stock_pb2.WriteOff:
    f = w.figures
    return stock_pb2.WriteOff(
        id=w.id,
        medium=w.medium,
        code=w.code,
        period_from=_day(w.period_from),
        period_to=_day(w.period_to),
        status=w.status,
        reject_reason=w.reject_reason,
        issued_count=f.issued_count,
        issued_amount=format_fen(f.issued_fen),
        red_count=f.red_count,
        red_amount=format_fen(f.red_fen),
        red_flushed_count=f.red_flushed_count,
        voided_count=f.voided_count,
        lost_count=w.lost_count,
        printed_count=f.printed_count,
        used=[_nr(x) for x in f.used],
        voided=[_nr(x) for x in f.voided],
        lost=[_nr(x) for x in w.lost],
        remark=w.remark,
        submissions=[
            stock_pb2.WriteOffSubmission(
                outcome=s.outcome,
                reason=s.reason,
                submitted_by=s.submitted_by,
                submitted_at=s.submitted_at.isoformat(),
            )
            for s in w.submissions
        ],
    )


def audit_report_pb(r: AuditReport) -> stock_pb2.AuditReport:
    return stock_pb2.AuditReport(
        id=r.id,
        fiscal_ref=r.fiscal_ref,
        lines=[
            stock_pb2.AuditLine(
                bill_code=x.figure.bill_code,
                count=x.figure.count,
                total_amount=format_fen(x.figure.total_fen),
                unarchived=x.figure.unarchived,
                platform_count=x.platform_count,
                platform_total_amount=format_fen(x.platform_total_fen),
                matches=x.matches,
            )
            for x in r.lines
        ],
    )
