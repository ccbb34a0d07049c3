"""Fiscal platform sandbox: a stand-in for the provincial fiscal e-bill platform.

A separate process speaking fiscal.v1.FiscalPlatform over gRPC, with its own SM2
key and its own SQLite store. It grants number segments, verifies each unit
signature against the key the unit registered (rejecting bad ones), checks what a
platform checks before it puts its seal on a bill (the amounts add up, the bill
code is one for the bill's kind, a red bill cancels a countersigned original of
the same unit exactly and once), countersigns (监制) what passes, keeps what it
countersigned, and answers verification (查验) by bill code, number and check
code. Latency and failure rate are settable, to rehearse a slow or failing platform.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import InvalidOperation
from pathlib import Path
from typing import Any

import grpc

from engine.canonical import countersign_message
from engine.qr import facts_of
from engine.sm2 import SigningKey, VerifyingKey
from ops.sandboxes.common import new_server, sandbox_tls, serve_forever
from ops.sandboxes.fiscal_base import BASE_SCHEMA, BaseDataDesk
from ops.sandboxes.fiscal_certs import CERT_SCHEMA, CaService, CertificateDesk
from ops.sandboxes.fiscal_rules import (
    Amounts,
    amounts_of,
    check_amounts,
    check_kind,
    negated,
    red_of_key,
)
from ops.sandboxes.fiscal_stock import MAX_APPLICATION, StockDesk, now
from ops.sandboxes.signer import KeyStore
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc

__all__ = ["MAX_APPLICATION", "FiscalService", "main"]

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
_ADDED_COLUMNS = (
    ("countersigned", "issued_at", "TEXT"),
    ("countersigned", "red", "INTEGER"),
    # The bill a red bill cancels ("bill_code/bill_no"), and every amount of a bill
    # (JSON of _amounts), to check that a red bill cancels a real bill exactly, once.
    ("countersigned", "red_of", "TEXT"),
    ("countersigned", "amounts", "TEXT"),
    # The platform's signature over the bill's QR facts (engine/qr.py).
    ("countersigned", "qr_signature", "BLOB"),
)


@dataclass(frozen=True, slots=True)
class _Sealed:
    """The SM2 work done for one item before its checks (FiscalService._seal)."""

    verified: bool
    fiscal_signature: bytes = b""
    qr_signature: bytes = b""


class FiscalService(
    StockDesk, BaseDataDesk, CertificateDesk, fiscal_pb2_grpc.FiscalPlatformServicer
):
    def __init__(
        self,
        data_dir: Path,
        *,
        latency_ms: int = 0,
        failure_rate: float = 0.0,
        sm2_workers: int | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # The SM2 work of a batch (verify each unit signature, sign the
        # countersignature and the QR facts) runs on this many threads: Tongsuo
        # releases the GIL, so a batch uses every core instead of the one the lock
        # would confine it to (a platform is a server farm, not one core). 1: in
        # turn, under the lock, as before (bench/fiscal_sandbox.py compares them).
        self._sm2_workers = max(1, sm2_workers or len(os.sched_getaffinity(0)))
        self._sm2 = ThreadPoolExecutor(self._sm2_workers, thread_name_prefix="fiscal-sm2")
        self._key: SigningKey = KeyStore(data_dir).get("fiscal")
        self._db = sqlite3.connect(data_dir / "fiscal.db", check_same_thread=False)
        self._db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
            + _SCHEMA
            + BASE_SCHEMA
            + CERT_SCHEMA
        )
        for table, column, kind in _ADDED_COLUMNS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        # Each red bill asks whether its original already has one.
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS countersigned_red_of ON countersigned (red_of)"
            " WHERE red_of IS NOT NULL"
        )
        self._db.commit()
        self._lock = threading.Lock()
        self._latency = latency_ms / 1000
        self._failure_rate = failure_rate
        # Grants by (unit_code, bill_code), read once and kept current by GrantSegment.
        self._grants: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._unit_keys: dict[str, VerifyingKey] = {
            u: VerifyingKey(bytes(k))
            for u, k in self._db.execute("SELECT unit_code, public_key FROM units")
        }
        # The CA this platform trusts (served beside it by main) and the units'
        # registered certificates.
        self.ca = CaService(KeyStore(data_dir).get("ca"))
        self._ca_key = KeyStore(data_dir).get("ca").public
        self._load_certs()

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
        if not request.unit_code:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unit_code: is required")
        with self._lock, self._db:
            known = self._unit_keys.get(request.unit_code)
            if known is not None and known.point != key.point:
                # Whoever could call RegisterUnit could otherwise take over a unit's
                # bills by swapping its key; a key change goes through the platform's
                # own key-change procedure, not this call.
                context.abort(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"unit {request.unit_code} is already registered with another public key;"
                    " its key cannot be replaced by RegisterUnit",
                )
            # The same key again is idempotent (a restarted engine registers again).
            self._db.execute(
                "INSERT INTO units VALUES (?, ?, ?) ON CONFLICT (unit_code) DO UPDATE"
                " SET unit_name = excluded.unit_name",
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
            (grant_id, unit_code, bill_code, start, end, now()),
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

    def _check(
        self, item: fiscal_pb2.CountersignItem, *, verified: bool
    ) -> tuple[str, str, dict[str, Any], Amounts | None]:
        """('', '', document, amounts) when the item may be countersigned, else
        (error_code, message, {}, None). ``verified``: whether its unit signature
        verifies (_seal found out)."""
        code, message, doc = self._check_identity(item, verified=verified)
        if code:
            return code, message, {}, None
        try:
            amounts = amounts_of(doc)
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            return "BAD_DOCUMENT", f"amounts of the document cannot be read: {exc}", {}, None
        code, message = check_amounts(item, amounts)
        if not code:
            code, message = check_kind(item.bill_code, doc)
        if not code:  # the charge items against the unit's catalogue (fiscal_base)
            code, message = self._check_items(item.unit_code, doc)
        if not code and "red_of" in doc:
            code, message = self._check_red(item, doc, amounts)
        if code:
            return code, message, {}, None
        return "", "", doc, amounts

    def _check_red(
        self, item: fiscal_pb2.CountersignItem, doc: dict[str, Any], amounts: Amounts
    ) -> tuple[str, str]:
        """A red bill cancels a countersigned original of the same unit, exactly, once."""
        red_of = doc["red_of"]
        if not isinstance(red_of, dict):
            return "BAD_RED_OF", "red_of must name the original's bill_code and bill_no"
        code, no = str(red_of.get("bill_code", "")), str(red_of.get("bill_no", ""))
        earlier = self._db.execute(
            "SELECT bill_code, bill_no FROM countersigned WHERE red_of = ? LIMIT 1",
            (f"{code}/{no}",),
        ).fetchone()
        if earlier is not None:
            return (
                "ALREADY_RED_FLUSHED",
                f"bill {code}/{no} already has a red bill, {earlier[0]}/{earlier[1]}",
            )
        original = self._db.execute(
            "SELECT unit_code, check_code, red, amounts, total_fen FROM countersigned"
            " WHERE bill_code = ? AND bill_no = ?",
            (code, no),
        ).fetchone()
        if original is None:
            issued_here = self._db.execute(
                "SELECT 1 FROM grants WHERE bill_code = ? LIMIT 1", (code,)
            ).fetchone()
            if issued_here is None:
                # A bill code this platform never granted: a bill issued elsewhere and
                # entered back at the unit (BackEntry). The platform cannot see its
                # amounts; it only makes sure it is red-flushed once.
                return "", ""
            return "UNKNOWN_ORIGINAL", f"red_of names {code}/{no}, which was never countersigned"
        unit_code, check_code, red, stored, total_fen = original
        if unit_code != item.unit_code:
            return "FOREIGN_ORIGINAL", f"bill {code}/{no} belongs to another unit"
        if red:
            return "RED_OF_RED", f"bill {code}/{no} is itself a red bill"
        if red_of.get("check_code", check_code) != check_code:
            return "MISMATCH", f"red_of check code differs from bill {code}/{no}'s"
        expected = (
            negated(Amounts.from_json(stored)) if stored else None
        )  # bills sealed before amounts were kept: their total is all we know
        if (expected is not None and amounts != expected) or amounts.total != -int(total_fen):
            return "NOT_NEGATED", f"amounts are not exactly those of {code}/{no} negated"
        return "", ""

    def _check_identity(
        self, item: fiscal_pb2.CountersignItem, *, verified: bool
    ) -> tuple[str, str, dict[str, Any]]:
        """('', '', document) when the item may be countersigned, else (error_code, message, {})."""
        key = self._unit_keys.get(item.unit_code)
        if key is None:
            return "UNKNOWN_UNIT", f"unit {item.unit_code} is not registered", {}
        # Its certificate valid at the bill's issue time, else its key (fiscal_certs).
        if not verified:
            return "BAD_UNIT_SIGNATURE", "unit signature does not verify", {}
        try:
            doc = json.loads(item.canonical)
        except ValueError:
            return "BAD_DOCUMENT", "canonical bytes are not a bill document", {}
        if not isinstance(doc, dict):
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
            items = list(request.items)
            keys = [(item.bill_code, item.bill_no) for item in items]
            stored_rows = {key: self._stored(key) for key in keys}
            # The SM2 work of every item not countersigned yet, on all cores at once;
            # what fails a check below is thrown away unseen.
            fresh = [i for i, key in enumerate(keys) if stored_rows[key] is None]
            sealed = dict(zip(fresh, self._seal_all([items[i] for i in fresh]), strict=True))
            inserted: set[tuple[str, str]] = set()
            for i, item in enumerate(items):
                res = fiscal_pb2.CountersignResult(bill_code=item.bill_code, bill_no=item.bill_no)
                digest = hashlib.new("sm3", item.canonical).hexdigest()
                key = keys[i]
                # A repeat later in the same request sees the row inserted before it.
                stored = self._stored(key) if key in inserted else stored_rows[key]
                if stored is not None:
                    if stored[0] == digest:
                        # Idempotent: the same bill again gets the first countersignature.
                        res.ok = True
                        res.unit_signature, res.fiscal_signature = stored[1], stored[2]
                        res.countersigned_at = stored[3]
                        res.qr_signature = stored[4] or self._sign_qr_late(item)
                    else:
                        res.error_code = "DUPLICATE_NUMBER"
                        res.error_message = "this number was countersigned for another bill"
                    results.append(res)
                    continue
                seal = sealed[i]
                code, message, doc, amounts = self._check(item, verified=seal.verified)
                if code or amounts is None:
                    res.error_code, res.error_message = code, message
                else:
                    res.ok = True
                    res.unit_signature = item.unit_signature
                    # Made over countersign_message(canonical, unit_signature), and the
                    # QR facts of the document just checked (_seal): the platform signs
                    # only what it saw.
                    res.fiscal_signature = seal.fiscal_signature
                    res.countersigned_at = now()
                    res.qr_signature = seal.qr_signature
                    # Inserted at once, so a repeat later in the same request sees it.
                    self._db.execute(
                        "INSERT INTO countersigned (bill_code, bill_no, unit_code, check_code,"
                        " total_fen, canonical_sm3, unit_signature, fiscal_signature,"
                        " countersigned_at, issued_at, red, red_of, amounts, qr_signature)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                            red_of_key(doc),
                            amounts.to_json(),
                            res.qr_signature,
                        ),
                    )
                    inserted.add(key)
                results.append(res)
        return fiscal_pb2.CountersignBatchResponse(results=results)

    def _stored(self, key: tuple[str, str]) -> tuple[Any, ...] | None:
        """What was countersigned under (bill_code, bill_no), if anything (lock held)."""
        row: tuple[Any, ...] | None = self._db.execute(
            "SELECT canonical_sm3, unit_signature, fiscal_signature, countersigned_at,"
            " qr_signature FROM countersigned WHERE bill_code = ? AND bill_no = ?",
            key,
        ).fetchone()
        return row

    def _seal(self, item: fiscal_pb2.CountersignItem) -> _Sealed:
        """One item's SM2 work: whether its unit signature verifies and, if so, the
        countersignature and the QR signature it gets should it pass the checks."""
        if not self._unit_verifies(item.unit_code, item.canonical, item.unit_signature):
            return _Sealed(verified=False)
        try:
            doc = json.loads(item.canonical)
        except ValueError:
            doc = None
        return _Sealed(
            verified=True,
            fiscal_signature=self._key.sign(
                countersign_message(item.canonical, item.unit_signature)
            ),
            qr_signature=self._sign_qr(doc) if isinstance(doc, dict) else b"",
        )

    def _seal_all(self, items: Sequence[fiscal_pb2.CountersignItem]) -> list[_Sealed]:
        """:meth:`_seal` of every item, in order, split over the SM2 threads."""
        n = min(self._sm2_workers, len(items))
        if n <= 1:
            return [self._seal(item) for item in items]
        size = -(-len(items) // n)
        chunks = [items[k : k + size] for k in range(0, len(items), size)]
        done = self._sm2.map(lambda chunk: [self._seal(item) for item in chunk], chunks)
        return [s for part in done for s in part]

    def _sign_qr(self, doc: dict[str, Any]) -> bytes:
        """The platform's signature over a document's QR facts; empty when the
        document lacks them (no issue time: nothing to state on a QR)."""
        try:
            return self._key.sign(facts_of(doc).message)
        except (KeyError, TypeError, ValueError):
            return b""

    def _sign_qr_late(self, item: fiscal_pb2.CountersignItem) -> bytes:
        """The QR signature of a bill countersigned before the platform signed QR
        facts: made now from its canonical bytes (whose digest matched) and kept
        (lock held)."""
        try:
            doc = json.loads(item.canonical)
        except ValueError:
            return b""
        signature = self._sign_qr(doc) if isinstance(doc, dict) else b""
        if not signature:
            return b""
        self._db.execute(
            "UPDATE countersigned SET qr_signature = ? WHERE bill_code = ? AND bill_no = ?",
            (signature, item.bill_code, item.bill_no),
        )
        return signature

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
    fiscal_pb2_grpc.add_CertificateAuthorityServicer_to_server(service.ca, server)
    serve_forever(server, args.addr, "fiscal", sandbox_tls("fiscal", Path(args.data_dir)))


if __name__ == "__main__":
    main()
