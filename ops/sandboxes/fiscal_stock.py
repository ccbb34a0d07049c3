"""The fiscal platform sandbox's stock desk: grant applications, returned
segments, write-off declarations and audit reports (mixed into FiscalService)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import grpc

from engine.model import CST
from ops.sandboxes.fiscal_rules import check_paper_write_off, range_size
from protos.fiscal.v1 import fiscal_pb2

__all__ = ["MAX_APPLICATION", "StockDesk", "now"]

# The largest grant one application may ask for; above it the platform refuses.
MAX_APPLICATION = 100_000


class StockDesk:
    """The stock calls of fiscal.v1.FiscalPlatform; FiscalService provides the store."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    _unit_keys: Mapping[str, object]

    def _weather(self, context: grpc.ServicerContext) -> None:
        raise NotImplementedError

    def _allocate(self, unit_code: str, bill_code: str, count: int) -> tuple[str, int, int] | None:
        raise NotImplementedError

    def _granted(self, unit_code: str, bill_code: str, bill_no: str) -> bool:
        raise NotImplementedError

    def SubmitGrantApplication(
        self, request: fiscal_pb2.SubmitGrantApplicationRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.SubmitGrantApplicationResponse:
        self._weather(context)
        if request.unit_code not in self._unit_keys:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown unit {request.unit_code}")
        if not (len(request.bill_code) == 8 and request.bill_code.isdigit()):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bill_code must be 8 digits")
        if request.count <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count must be positive")
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT fiscal_ref FROM applications WHERE unit_code = ? AND ref = ?",
                (request.unit_code, request.ref),
            ).fetchone()
            if row is not None:  # the same application sent again
                return fiscal_pb2.SubmitGrantApplicationResponse(fiscal_ref=row[0])
            fiscal_ref = "APP" + uuid.uuid4().hex[:16]
            self._db.execute(
                "INSERT INTO applications VALUES (?, ?, ?, ?, ?, ?, 'pending', '', '', ?)",
                (fiscal_ref, request.unit_code, request.ref, request.bill_code, request.count,
                 request.reason, now()),
            )  # fmt: skip
        return fiscal_pb2.SubmitGrantApplicationResponse(fiscal_ref=fiscal_ref)

    def GetGrantApplications(
        self, request: fiscal_pb2.GetGrantApplicationsRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.GetGrantApplicationsResponse:
        """Decide pending applications (the sandbox's reviewer is instant) and report."""
        self._weather(context)
        out = []
        with self._lock, self._db:
            for ref in request.fiscal_refs:
                row = self._db.execute(
                    "SELECT bill_code, count, status, grant_id, reject_reason FROM applications"
                    " WHERE fiscal_ref = ? AND unit_code = ?",
                    (ref, request.unit_code),
                ).fetchone()
                if row is None:
                    out.append(
                        fiscal_pb2.GrantDecision(
                            fiscal_ref=ref, status="rejected", reason="unknown application"
                        )
                    )
                    continue
                bill_code, count, status, grant_id, reason = row
                if status == "pending":
                    allocated = None
                    if count > MAX_APPLICATION:
                        reason = (
                            f"count {count} exceeds the platform's limit of {MAX_APPLICATION} "
                            "numbers per application"
                        )
                    else:
                        allocated = self._allocate(request.unit_code, bill_code, count)
                        reason = "" if allocated else "bill code exhausted"
                    status = "granted" if allocated else "rejected"
                    grant_id = allocated[0] if allocated else ""
                    self._db.execute(
                        "UPDATE applications SET status = ?, grant_id = ?, reject_reason = ?"
                        " WHERE fiscal_ref = ?",
                        (status, grant_id, reason, ref),
                    )
                decision = fiscal_pb2.GrantDecision(
                    fiscal_ref=ref, status=status, bill_code=bill_code, reason=reason
                )
                if status == "granted":
                    start, end = self._db.execute(
                        "SELECT start_no, end_no FROM grants WHERE grant_id = ?", (grant_id,)
                    ).fetchone()
                    decision.grant_id = grant_id
                    decision.start_no, decision.end_no = f"{start:010d}", f"{end:010d}"
                out.append(decision)
        return fiscal_pb2.GetGrantApplicationsResponse(decisions=out)

    def ReturnSegment(
        self, request: fiscal_pb2.ReturnSegmentRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.ReturnSegmentResponse:
        self._weather(context)
        start, end = int(request.start_no), int(request.end_no)
        with self._lock, self._db:
            for no in (start, end):
                if not self._granted(request.unit_code, request.bill_code, f"{no:010d}"):
                    context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"number {request.bill_code}/{no:010d} was not granted to the unit",
                    )
            used = self._db.execute(
                "SELECT bill_no FROM countersigned WHERE bill_code = ? AND bill_no BETWEEN ? AND ?"
                " LIMIT 1",
                (request.bill_code, request.start_no, request.end_no),
            ).fetchone()
            if used:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"number {request.bill_code}/{used[0]} is on a countersigned bill",
                )
            self._db.execute(
                "INSERT INTO returns VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (request.ref, request.unit_code, request.bill_code, start, end, now()),
            )
        return fiscal_pb2.ReturnSegmentResponse()

    def _countersigned_in(
        self, unit_code: str, bill_code: str, period_from: str, period_to: str
    ) -> list[tuple[str, int, int]]:
        """(bill_no, total_fen, red) of bills countersigned for the unit issued in the period."""
        lo = datetime.strptime(period_from, "%Y%m%d").date()
        hi = datetime.strptime(period_to, "%Y%m%d").date()
        out = []
        for bill_no, total, issued_at, red in self._db.execute(
            "SELECT bill_no, total_fen, issued_at, red FROM countersigned"
            " WHERE unit_code = ? AND bill_code = ?",
            (unit_code, bill_code),
        ):
            if not issued_at:
                continue
            day = datetime.fromisoformat(issued_at.replace("Z", "+00:00")).astimezone(CST).date()
            if lo <= day <= hi:
                out.append((bill_no, int(total), int(red or 0)))
        return out

    def SubmitWriteOff(
        self, request: fiscal_pb2.SubmitWriteOffRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.SubmitWriteOffResponse:
        self._weather(context)
        f = request.figures
        fiscal_ref = "WO" + uuid.uuid4().hex[:16]
        with self._lock, self._db:
            try:
                reason = (
                    self._check_ebill_write_off(request)
                    if request.medium == "ebill"
                    else check_paper_write_off(f)
                )
            except ValueError as exc:
                reason = f"malformed declaration: {exc}"
            self._db.execute(
                "INSERT INTO write_offs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fiscal_ref, request.unit_code, request.medium, request.code, request.period_from,
                 request.period_to, 0 if reason else 1, reason, str(f), now()),
            )  # fmt: skip
        return fiscal_pb2.SubmitWriteOffResponse(
            accepted=not reason, reason=reason, fiscal_ref=fiscal_ref
        )

    def _check_ebill_write_off(self, request: fiscal_pb2.SubmitWriteOffRequest) -> str:
        """'' when the declaration matches what the platform countersigned, else why not."""
        f = request.figures
        rows = self._countersigned_in(
            request.unit_code, request.code, request.period_from, request.period_to
        )
        normal = [(n, t) for n, t, red in rows if not red]
        red = [(n, t) for n, t, r in rows if r]
        mine = (len(normal), sum(t for _, t in normal), len(red), sum(t for _, t in red))
        declared = (f.issued_count, f.issued_fen, f.red_count, f.red_fen)
        if mine != declared:
            return (
                f"figures differ from the platform's: declared issued {declared[0]} bills "
                f"({declared[1]} fen), red {declared[2]} ({declared[3]} fen); the platform "
                f"countersigned issued {mine[0]} ({mine[1]} fen), red {mine[2]} ({mine[3]} fen)"
            )
        for label, ranges in (("lost", f.lost), ("voided", f.voided)):
            for r in ranges:
                used = self._db.execute(
                    "SELECT bill_no FROM countersigned WHERE bill_code = ?"
                    " AND bill_no BETWEEN ? AND ? LIMIT 1",
                    (request.code, r.start_no, r.end_no),
                ).fetchone()
                if used:
                    return (
                        f"number {request.code}/{used[0]} is declared {label} but is on a "
                        "countersigned bill"
                    )
                for no in (r.start_no, r.end_no):
                    if not self._granted(request.unit_code, request.code, no):
                        return f"number {request.code}/{no} declared {label} was not granted"
        if sum(range_size(r) for r in f.lost) != f.lost_count:
            return "lost_count differs from the lost ranges"
        if sum(range_size(r) for r in f.voided) != f.voided_count:
            return "voided_count differs from the voided ranges"
        return ""

    def SubmitAuditReport(
        self, request: fiscal_pb2.SubmitAuditReportRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.SubmitAuditReportResponse:
        self._weather(context)
        platform = []
        with self._lock:
            for code in sorted({line.bill_code for line in request.lines}):
                rows = self._countersigned_in(
                    request.unit_code, code, request.period_from, request.period_to
                )
                platform.append(
                    fiscal_pb2.AuditLine(
                        bill_code=code, count=len(rows), total_fen=sum(t for _, t, _ in rows)
                    )
                )
            fiscal_ref = "AR" + uuid.uuid4().hex[:16]
            with self._db:
                self._db.execute(
                    "INSERT INTO audit_reports VALUES (?, ?, ?, ?, ?, ?)",
                    (fiscal_ref, request.unit_code, request.period_from, request.period_to,
                     str(list(request.lines)), now()),
                )  # fmt: skip
        return fiscal_pb2.SubmitAuditReportResponse(fiscal_ref=fiscal_ref, platform=platform)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
