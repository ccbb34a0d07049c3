"""Fiscal platform sandbox: a stand-in for the provincial fiscal e-bill platform.

A separate process speaking fiscal.v1.FiscalPlatform over gRPC, with its own SM2
key and its own SQLite store. It grants number segments, verifies each unit
signature against the key the unit registered (rejecting bad ones), countersigns
(监制) what passes, keeps what it countersigned, and answers verification (查验)
by bill code, number and check code. Latency and failure rate are settable, to
rehearse a slow or failing platform.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from engine.canonical import countersign_message
from engine.model import CST
from engine.sm2 import SigningKey, VerifyingKey
from ops.sandboxes.common import new_server, serve_forever
from ops.sandboxes.signer import KeyStore
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc

__all__ = ["FiscalService", "main"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS units (unit_code TEXT PRIMARY KEY, unit_name TEXT, public_key BLOB);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY, unit_code TEXT, bill_code TEXT, start_no INTEGER, end_no INTEGER,
    granted_at TEXT);
CREATE TABLE IF NOT EXISTS countersigned (
    bill_code TEXT, bill_no TEXT, unit_code TEXT, check_code TEXT, total_fen INTEGER,
    canonical_sm3 TEXT, unit_signature BLOB, fiscal_signature BLOB, countersigned_at TEXT,
    PRIMARY KEY (bill_code, bill_no));
CREATE TABLE IF NOT EXISTS applications (
    fiscal_ref TEXT PRIMARY KEY, unit_code TEXT, ref TEXT, bill_code TEXT, count INTEGER,
    reason TEXT, status TEXT, grant_id TEXT, reject_reason TEXT, submitted_at TEXT,
    UNIQUE (unit_code, ref));
CREATE TABLE IF NOT EXISTS returns (
    ref TEXT, unit_code TEXT, bill_code TEXT, start_no INTEGER, end_no INTEGER, returned_at TEXT,
    PRIMARY KEY (unit_code, ref));
CREATE TABLE IF NOT EXISTS write_offs (
    fiscal_ref TEXT PRIMARY KEY, unit_code TEXT, medium TEXT, code TEXT, period_from TEXT,
    period_to TEXT, accepted INTEGER, reason TEXT, figures TEXT, submitted_at TEXT);
CREATE TABLE IF NOT EXISTS audit_reports (
    fiscal_ref TEXT PRIMARY KEY, unit_code TEXT, period_from TEXT, period_to TEXT, lines TEXT,
    submitted_at TEXT);
"""
# Columns added after the first release of the sandbox: (table, column, type).
_ADDED_COLUMNS = (("countersigned", "issued_at", "TEXT"), ("countersigned", "red", "INTEGER"))

# The largest grant one application may ask for; above it the platform refuses.
MAX_APPLICATION = 100_000


class FiscalService(fiscal_pb2_grpc.FiscalPlatformServicer):
    def __init__(self, data_dir: Path, *, latency_ms: int = 0, failure_rate: float = 0.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._key: SigningKey = KeyStore(data_dir).get("fiscal")
        self._db = sqlite3.connect(data_dir / "fiscal.db", check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA)
        for table, column, kind in _ADDED_COLUMNS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._lock = threading.Lock()
        self._latency = latency_ms / 1000
        self._failure_rate = failure_rate
        # Grants by (unit_code, bill_code), read once and kept current by GrantSegment.
        self._grants: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._unit_keys: dict[str, VerifyingKey] = {
            u: VerifyingKey(bytes(k))
            for u, k in self._db.execute("SELECT unit_code, public_key FROM units")
        }

    def _weather(self, context: grpc.ServicerContext) -> None:
        """Simulated network: latency on every call, and a failure now and then."""
        if self._latency:
            time.sleep(self._latency)
        if self._failure_rate and random.random() < self._failure_rate:
            context.abort(grpc.StatusCode.UNAVAILABLE, "fiscal platform sandbox: injected failure")

    def RegisterUnit(
        self, request: fiscal_pb2.RegisterUnitRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.RegisterUnitResponse:
        try:
            key = VerifyingKey(request.public_key)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"public_key: {exc}")
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO units VALUES (?, ?, ?) ON CONFLICT (unit_code) DO UPDATE"
                " SET unit_name = excluded.unit_name, public_key = excluded.public_key",
                (request.unit_code, request.unit_name, key.point),
            )
            self._unit_keys[request.unit_code] = key
        return fiscal_pb2.RegisterUnitResponse()

    def GrantSegment(
        self, request: fiscal_pb2.GrantSegmentRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.GrantSegmentResponse:
        self._weather(context)
        if request.unit_code not in self._unit_keys:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown unit {request.unit_code}")
        if not (len(request.bill_code) == 8 and request.bill_code.isdigit()):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bill_code must be 8 digits")
        if not 0 < request.count <= 10_000_000:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count must be 1..10000000")
        with self._lock, self._db:
            allocated = self._allocate(request.unit_code, request.bill_code, request.count)
        if allocated is None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "bill code exhausted")
            raise AssertionError("abort raises")
        grant_id, start, end = allocated
        return fiscal_pb2.GrantSegmentResponse(
            grant_id=grant_id,
            bill_code=request.bill_code,
            start_no=f"{start:010d}",
            end_no=f"{end:010d}",
        )

    def _allocate(self, unit_code: str, bill_code: str, count: int) -> tuple[str, int, int] | None:
        """The next ``count`` numbers of a bill code, granted to the unit (lock held)."""
        (last,) = self._db.execute(
            "SELECT coalesce(max(end_no), 0) FROM grants WHERE bill_code = ?", (bill_code,)
        ).fetchone()
        start, end = last + 1, last + count
        if end >= 10**10:
            return None
        grant_id = uuid.uuid4().hex
        self._db.execute(
            "INSERT INTO grants VALUES (?, ?, ?, ?, ?, ?)",
            (grant_id, unit_code, bill_code, start, end, _now()),
        )
        self._grants.pop((unit_code, bill_code), None)
        return grant_id, start, end

    def _granted(self, unit_code: str, bill_code: str, bill_no: str) -> bool:
        ranges = self._grants.get((unit_code, bill_code))
        if ranges is None:
            ranges = self._db.execute(
                "SELECT start_no, end_no FROM grants WHERE unit_code = ? AND bill_code = ?",
                (unit_code, bill_code),
            ).fetchall()
            self._grants[(unit_code, bill_code)] = ranges
        no = int(bill_no)
        return any(start <= no <= end for start, end in ranges)

    def _check(self, item: fiscal_pb2.CountersignItem) -> tuple[str, str, dict[str, Any]]:
        """('', '', document) when the item may be countersigned, else (error_code, message, {})."""
        key = self._unit_keys.get(item.unit_code)
        if key is None:
            return "UNKNOWN_UNIT", f"unit {item.unit_code} is not registered", {}
        if not key.verify(item.canonical, item.unit_signature):
            return "BAD_UNIT_SIGNATURE", "unit signature does not verify", {}
        try:
            doc = json.loads(item.canonical)
        except ValueError:
            return "BAD_DOCUMENT", "canonical bytes are not a bill document", {}
        claimed = (item.unit_code, item.bill_code, item.bill_no, item.check_code)
        signed = tuple(doc.get(k) for k in ("unit_code", "bill_code", "bill_no", "check_code"))
        if claimed != signed:
            return "MISMATCH", "bill identity differs from the signed document", {}
        if not item.bill_no.isdigit() or not self._granted(*claimed[:3]):
            return (
                "NOT_GRANTED",
                f"number {item.bill_code}/{item.bill_no} was not granted to the unit",
                {},
            )
        return "", "", doc

    def CountersignBatch(
        self, request: fiscal_pb2.CountersignBatchRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.CountersignBatchResponse:
        self._weather(context)
        results = []
        with self._lock, self._db:
            for item in request.items:
                res = fiscal_pb2.CountersignResult(bill_code=item.bill_code, bill_no=item.bill_no)
                digest = hashlib.new("sm3", item.canonical).hexdigest()
                stored = self._db.execute(
                    "SELECT canonical_sm3, unit_signature, fiscal_signature, countersigned_at"
                    " FROM countersigned WHERE bill_code = ? AND bill_no = ?",
                    (item.bill_code, item.bill_no),
                ).fetchone()
                if stored is not None:
                    if stored[0] == digest:
                        # Idempotent: the same bill again gets the first countersignature.
                        res.ok = True
                        res.unit_signature, res.fiscal_signature = stored[1], stored[2]
                        res.countersigned_at = stored[3]
                    else:
                        res.error_code = "DUPLICATE_NUMBER"
                        res.error_message = "this number was countersigned for another bill"
                    results.append(res)
                    continue
                code, message, doc = self._check(item)
                if code:
                    res.error_code, res.error_message = code, message
                else:
                    res.ok = True
                    res.unit_signature = item.unit_signature
                    res.fiscal_signature = self._key.sign(
                        countersign_message(item.canonical, item.unit_signature)
                    )
                    res.countersigned_at = _now()
                    # Inserted at once, so a repeat later in the same request sees it.
                    self._db.execute(
                        "INSERT INTO countersigned (bill_code, bill_no, unit_code, check_code,"
                        " total_fen, canonical_sm3, unit_signature, fiscal_signature,"
                        " countersigned_at, issued_at, red)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            item.bill_code,
                            item.bill_no,
                            item.unit_code,
                            item.check_code,
                            item.total_fen,
                            digest,
                            item.unit_signature,
                            res.fiscal_signature,
                            res.countersigned_at,
                            doc.get("issued_at", ""),
                            1 if "red_of" in doc else 0,
                        ),
                    )
                results.append(res)
        return fiscal_pb2.CountersignBatchResponse(results=results)

    def VerifyBill(
        self, request: fiscal_pb2.VerifyBillRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.VerifyBillResponse:
        row = self._db.execute(
            "SELECT total_fen, canonical_sm3, countersigned_at, unit_code FROM countersigned"
            " WHERE bill_code = ? AND bill_no = ? AND check_code = ?",
            (request.bill_code, request.bill_no, request.check_code),
        ).fetchone()
        if row is None:
            return fiscal_pb2.VerifyBillResponse(found=False)
        return fiscal_pb2.VerifyBillResponse(
            found=True,
            total_fen=row[0],
            canonical_sm3=row[1],
            countersigned_at=row[2],
            unit_code=row[3],
        )

    def GetPublicKey(
        self, request: fiscal_pb2.GetPublicKeyRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.GetPublicKeyResponse:
        return fiscal_pb2.GetPublicKeyResponse(public_key=self._key.public.point)

    # -- stock ----------------------------------------------------------------

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
                 request.reason, _now()),
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
                (request.ref, request.unit_code, request.bill_code, start, end, _now()),
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
                    else _check_paper_write_off(f)
                )
            except ValueError as exc:
                reason = f"malformed declaration: {exc}"
            self._db.execute(
                "INSERT INTO write_offs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fiscal_ref, request.unit_code, request.medium, request.code, request.period_from,
                 request.period_to, 0 if reason else 1, reason, str(f), _now()),
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
        if sum(_size(r) for r in f.lost) != f.lost_count:
            return "lost_count differs from the lost ranges"
        if sum(_size(r) for r in f.voided) != f.voided_count:
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
                     str(list(request.lines)), _now()),
                )  # fmt: skip
        return fiscal_pb2.SubmitAuditReportResponse(fiscal_ref=fiscal_ref, platform=platform)


def _size(r: fiscal_pb2.NumberRange) -> int:
    start, end = int(r.start_no), int(r.end_no)
    if end < start:
        raise ValueError(f"range {r.start_no}-{r.end_no} runs backwards")
    return end - start + 1


def _check_paper_write_off(f: fiscal_pb2.WriteOffFigures) -> str:
    """Paper: every paper number is declared once, and the counts match the ranges."""
    seen: list[tuple[int, int, str]] = []
    for label, ranges in (("used", f.used), ("voided", f.voided), ("lost", f.lost)):
        for r in ranges:
            _size(r)
            seen.append((int(r.start_no), int(r.end_no), label))
    seen.sort()
    for (_, e1, l1), (s2, _, l2) in itertools.pairwise(seen):
        if s2 <= e1:
            return f"paper number {s2:010d} is declared both {l1} and {l2}"
    if sum(_size(r) for r in f.used) != f.printed_count:
        return "printed_count differs from the used ranges"
    if sum(_size(r) for r in f.voided) != f.voided_count:
        return "voided_count differs from the voided ranges"
    if sum(_size(r) for r in f.lost) != f.lost_count:
        return "lost_count differs from the lost ranges"
    return ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", default=os.environ.get("EBILL_FISCAL_ADDR", "127.0.0.1:50071"))
    parser.add_argument("--data-dir", default=os.environ.get("EBILL_DATA_DIR", "var"))
    parser.add_argument(
        "--latency-ms", type=int, default=int(os.environ.get("EBILL_FISCAL_LATENCY_MS", "0"))
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=float(os.environ.get("EBILL_FISCAL_FAILURE_RATE", "0")),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fiscal %(message)s")
    server = new_server()
    service = FiscalService(
        Path(args.data_dir) / "fiscal", latency_ms=args.latency_ms, failure_rate=args.failure_rate
    )
    fiscal_pb2_grpc.add_FiscalPlatformServicer_to_server(service, server)
    serve_forever(server, args.addr, "fiscal")


if __name__ == "__main__":
    main()
