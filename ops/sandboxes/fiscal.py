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

import grpc

from engine.canonical import countersign_message
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
"""


class FiscalService(fiscal_pb2_grpc.FiscalPlatformServicer):
    def __init__(self, data_dir: Path, *, latency_ms: int = 0, failure_rate: float = 0.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._key: SigningKey = KeyStore(data_dir).get("fiscal")
        self._db = sqlite3.connect(data_dir / "fiscal.db", check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA)
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
            (last,) = self._db.execute(
                "SELECT coalesce(max(end_no), 0) FROM grants WHERE bill_code = ?",
                (request.bill_code,),
            ).fetchone()
            start, end = last + 1, last + request.count
            if end >= 10**10:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "bill code exhausted")
            grant_id = uuid.uuid4().hex
            self._db.execute(
                "INSERT INTO grants VALUES (?, ?, ?, ?, ?, ?)",
                (grant_id, request.unit_code, request.bill_code, start, end, _now()),
            )
            self._grants.pop((request.unit_code, request.bill_code), None)
        return fiscal_pb2.GrantSegmentResponse(
            grant_id=grant_id,
            bill_code=request.bill_code,
            start_no=f"{start:010d}",
            end_no=f"{end:010d}",
        )

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

    def _check(self, item: fiscal_pb2.CountersignItem) -> tuple[str, str]:
        """('', '') when the item may be countersigned, else (error_code, message)."""
        key = self._unit_keys.get(item.unit_code)
        if key is None:
            return "UNKNOWN_UNIT", f"unit {item.unit_code} is not registered"
        if not key.verify(item.canonical, item.unit_signature):
            return "BAD_UNIT_SIGNATURE", "unit signature does not verify"
        try:
            doc = json.loads(item.canonical)
        except ValueError:
            return "BAD_DOCUMENT", "canonical bytes are not a bill document"
        claimed = (item.unit_code, item.bill_code, item.bill_no, item.check_code)
        signed = tuple(doc.get(k) for k in ("unit_code", "bill_code", "bill_no", "check_code"))
        if claimed != signed:
            return "MISMATCH", "bill identity differs from the signed document"
        if not item.bill_no.isdigit() or not self._granted(*claimed[:3]):
            return (
                "NOT_GRANTED",
                f"number {item.bill_code}/{item.bill_no} was not granted to the unit",
            )
        return "", ""

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
                code, message = self._check(item)
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
                        "INSERT INTO countersigned VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
