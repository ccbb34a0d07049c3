"""Bills rows as domain values: the one mapping from a ``bills`` row, and the
reads that find a bill or lock its lifecycle state.

A row becomes the :class:`engine.model.BillRecord` part of a Work or an
IssuedBill by field name (:func:`record_of`); only the columns whose name or
type differ from the field are spelled out here. The request and the canonical
bytes are sealed (storage.personal): every mapping takes the key ring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from engine.lifecycle import BillKey, BillState
from engine.model import RECORD_FIELDS, BillStatus, IssuedBill
from engine.pipeline import Work
from engine.prepare import Prepared
from engine.sealing import KeyRing
from engine.serde import input_from_dict
from engine.statuses import PaperStatus
from storage.personal import open_canonical, open_request

__all__ = [
    "BILL_SELECT",
    "STATE_COLUMNS",
    "STATE_FROM",
    "content_digest",
    "key_where",
    "lock_state_by_key",
    "lock_states",
    "record_of",
    "row_to_bill",
    "row_to_state",
    "row_to_work",
    "stored_digest",
]

# A bill with what its lifecycle links to: the bill a red bill cancels, the red
# bill that cancelled it, the bill a remainder replaces, its current paper.
BILL_SELECT = (
    "SELECT b.*,"
    " coalesce(o.bill_code || '/' || o.bill_no, '') AS red_of_key,"
    " coalesce(r.bill_code || '/' || r.bill_no, '') AS red_by_key,"
    " coalesce(rp.bill_code || '/' || rp.bill_no, '') AS replaces_key,"
    " coalesce(p.status, 'none') AS paper_status"
    " FROM bills b"
    " LEFT JOIN bills o ON o.id = b.red_of"
    " LEFT JOIN bills r ON r.red_of = b.id AND r.status <> 'rejected'"
    " LEFT JOIN bills rp ON rp.id = b.replaces"
    " LEFT JOIN paper_bills p ON p.paper_code = b.paper_code AND p.paper_no = b.paper_no"
)


def _signature(value: bytes | None) -> bytes:
    # NULL until the bill is signed (or countersigned).
    return bytes(value or b"")


# Column -> field where the name differs; field -> conversion where the value does.
_COLUMN_OF = {"bill_id": "id"}
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "status": BillStatus,
    "unit_signature": _signature,
    "fiscal_signature": _signature,
    "qr_signature": _signature,
}
_NOT_STORED = frozenset({"replayed"})
# Sealed (storage.personal): opened by record_of.
_SEALED = frozenset({"canonical"})
_READERS: tuple[tuple[str, str, Callable[[Any], Any] | None], ...] = tuple(
    (name, _COLUMN_OF.get(name, name), _CONVERT.get(name))
    for name in RECORD_FIELDS
    if name not in _NOT_STORED
)


def record_of(
    row: asyncpg.Record, ring: KeyRing, *, replayed: bool = False, with_canonical: bool = True
) -> dict[str, Any]:
    """The BillRecord fields of a ``bills`` row, by field name, in field order; the
    canonical bytes opened (empty without ``with_canonical``: a listing does not
    show them)."""
    out: dict[str, Any] = {}
    for name, column, convert in _READERS:
        if name in _SEALED:
            out[name] = open_canonical(ring, row) if with_canonical else b""
        else:
            out[name] = row[column] if convert is None else convert(row[column])
    out["replayed"] = replayed
    return out


def row_to_work(row: asyncpg.Record, ring: KeyRing, *, replayed: bool) -> Work:
    at = row["countersigned_at"]
    return Work(
        **record_of(row, ring, replayed=replayed), countersigned_at=at.isoformat() if at else ""
    )


def row_to_bill(
    row: asyncpg.Record, ring: KeyRing, *, with_request: bool = True, with_canonical: bool = True
) -> IssuedBill:
    """A bill with its lifecycle links; the ``*_key`` columns come from BILL_SELECT."""
    return IssuedBill(
        **record_of(row, ring, with_canonical=with_canonical),
        source=input_from_dict(open_request(ring, row)) if with_request else None,
        paper_code=(row["paper_code"] or "").strip(),
        paper_no=(row["paper_no"] or "").strip(),
        red_of=row.get("red_of_key") or "",
        red_by=row.get("red_by_key") or "",
        replaces=row.get("replaces_key") or "",
        paper_status=PaperStatus(row.get("paper_status") or PaperStatus.NONE),
        origin=row["origin"],
        operator=row["operator"],
    )


def key_where(key: BillKey) -> tuple[str, list[Any]]:
    """The WHERE clause (on alias ``b``) and arguments that find a bill by ``key``."""
    if key.bill_code:
        return " WHERE b.bill_code = $1 AND b.bill_no = $2", [key.bill_code, key.bill_no]
    return " WHERE b.unit_code = $1 AND b.bus_no = $2", [key.unit_code, key.bus_no]


# The state the lifecycle rules look at (columns, and the tables they come from).
STATE_COLUMNS = (
    "b.id, b.unit_code, b.place_code, b.bill_code, b.bill_no, b.status, b.total_fen,"
    " b.bill_kind, b.bus_type, b.origin, b.red_of IS NOT NULL AS is_red,"
    " coalesce((SELECT r.bill_code || '/' || r.bill_no FROM bills r"
    "   WHERE r.red_of = b.id AND r.status <> 'rejected'), '')"
    "   AS red_by,"
    " coalesce(p.status, 'none') AS paper, coalesce(b.paper_code, '') AS paper_code,"
    " coalesce(b.paper_no, '') AS paper_no, b.converted_at IS NOT NULL AS converted"
)
STATE_FROM = (
    " FROM bills b"
    " LEFT JOIN paper_bills p ON p.paper_code = b.paper_code AND p.paper_no = b.paper_no"
)
_STATE_SQL = "SELECT " + STATE_COLUMNS + STATE_FROM


def row_to_state(r: asyncpg.Record) -> BillState:
    return BillState(
        bill_id=r["id"],
        unit_code=r["unit_code"],
        place_code=r["place_code"],
        bill_code=r["bill_code"],
        bill_no=r["bill_no"],
        status=BillStatus(r["status"]),
        total_fen=r["total_fen"],
        bill_kind=r["bill_kind"],
        bus_type=r["bus_type"],
        origin=r["origin"],
        is_red=r["is_red"],
        red_by=r["red_by"],
        paper=PaperStatus(r["paper"]),
        paper_code=r["paper_code"].strip(),
        paper_no=r["paper_no"].strip(),
        converted=r["converted"],
    )


async def lock_states(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, BillState]:
    """The lifecycle state of bills by id, their rows locked until the transaction ends."""
    rows = await conn.fetch(
        _STATE_SQL + " WHERE b.id = ANY($1::bigint[]) ORDER BY b.id FOR UPDATE OF b", list(ids)
    )
    return {r["id"]: row_to_state(r) for r in rows}


async def lock_state_by_key(conn: asyncpg.Connection, key: BillKey) -> BillState | None:
    """A bill's lifecycle state by number or by serial, its row locked."""
    where, args = key_where(key)
    row = await conn.fetchrow(_STATE_SQL + where + " FOR UPDATE OF b", *args)
    return None if row is None else row_to_state(row)


def _digest(request: dict[str, Any], red_of: int, replaces: int) -> bytes:
    if red_of or replaces:
        # A lifecycle bill's bus_time is the moment of the call: a retry of the same
        # red-flush or refund differs in it and nothing else.
        request = {k: v for k, v in request.items() if k != "bus_time"}
    text = json.dumps(
        [request, red_of, replaces], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).digest()


def content_digest(p: Prepared) -> bytes:
    """What a bill asks for, as a digest: two requests under one bus_no are the
    same bill exactly when their digests are equal (a retry), else a serial reused."""
    return _digest(p.request, p.red_of, p.replaces)


def stored_digest(row: asyncpg.Record, ring: KeyRing) -> bytes:
    """:func:`content_digest` of the request a ``bills`` row was stored for."""
    return _digest(open_request(ring, row), row["red_of"] or 0, row["replaces"] or 0)
