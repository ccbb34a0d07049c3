"""Lifecycle reads and the back entry of bills issued elsewhere.

Red bills and refunds are written by storage.bills.reserve (they take numbers);
paper by storage.paper. Here: what the edge reads to prepare them, the back
entry (原票补录) and the filtered listing of an issuing point's bills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from engine.canonical import CANONICAL_VERSION
from engine.errors import AlreadyExists, InvalidArgument
from engine.lifecycle import BillKey, BillState
from engine.model import CST, BillStatus, IssuedBill, Reservation
from engine.numbers import BillNo
from engine.prepare import Prepared
from engine.sealing import KeyRing
from engine.statuses import PaperStatus
from storage.bill_rows import (
    BILL_SELECT,
    STATE_COLUMNS,
    STATE_FROM,
    key_where,
    row_to_bill,
    row_to_state,
)
from storage.personal import (
    CARD,
    ID_CARD,
    TEL,
    name_digest,
    open_canonical,
    open_request,
    seal_bill,
)

__all__ = [
    "BillFilter",
    "Original",
    "back_entry",
    "bill_code_for",
    "bill_events",
    "day_bounds",
    "list_bills",
    "load_original",
]


@dataclass(frozen=True, slots=True)
class Original:
    """A bill as a red-flush or refund needs it: state, signed document, request."""

    state: BillState
    canonical: bytes
    request: dict[str, Any]


async def load_original(pool: asyncpg.Pool, key: BillKey, ring: KeyRing) -> Original | None:
    """Read without a lock: the reserve transaction checks the state again under one."""
    where, args = key_where(key)
    row = await pool.fetchrow(
        "SELECT " + STATE_COLUMNS + ", b.canonical_sealed, b.request_sealed" + STATE_FROM + where,
        *args,
    )
    if row is None:
        return None
    return Original(row_to_state(row), open_canonical(ring, row), open_request(ring, row))


async def bill_code_for(pool: asyncpg.Pool, unit_code: str, bus_type: str) -> str | None:
    """The bill code the unit issues a business type on."""
    code = await pool.fetchval(
        "SELECT bill_code FROM bill_codes WHERE unit_code = $1 AND bus_type = $2",
        unit_code,
        bus_type,
    )
    return None if code is None else str(code)


async def back_entry(
    pool: asyncpg.Pool,
    p: Prepared,
    *,
    bill_code: str,
    bill_no: str,
    check_code: str,
    issued_at: datetime,
    operator: str,
    ring: KeyRing,
) -> IssuedBill:
    """Record a bill issued outside this system (原票补录) so it can be refunded here.

    The stored document is rendered from the validated request under the
    original's own numbers; it carries no signature of ours.
    """
    res = Reservation(bill_code, bill_no, check_code, issued_at)
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(
            "SELECT 1 FROM segments"
            " WHERE bill_code = $1 AND $2::bigint BETWEEN start_no AND end_no",
            bill_code,
            BillNo.parse(bill_no),
        ):
            raise InvalidArgument(
                f"bill_no: {bill_code}/{bill_no} is a number of this system's own stock; "
                "back entry is for bills issued elsewhere",
                field="bill_no",
            )
        bill_id = await conn.fetchval("SELECT nextval('bills_id_seq')")
        sealed = seal_bill(
            ring,
            bill_id,
            p.request,
            p.canonical(res),
            id_card=p.payer_id_card_no,
            tel=p.payer_tel,
            card=p.payer_card_no,
            name=p.payer_name,
        )
        try:
            await conn.execute(
                "INSERT INTO bills (id, unit_code, bus_no, bus_type, bill_kind, place_code,"
                " bill_code, bill_no, check_code, segment_id, status, total_fen,"
                " payer_id_card_hash, payer_card_hash, payer_tel_hash, cashier, bus_time,"
                " issued_at, request_sealed, canonical_sealed, canonical_version, origin,"
                " operator, archived_at, payer_name_hash)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $21, $10, $11, $12, $13,"
                " $14, $15, $16, $17, $18, $19, 'back_entry', $20, now(), $22)",
                bill_id,
                p.unit_code,
                p.bus_no,
                p.bus_type,
                p.bill_kind,
                p.place_code,
                bill_code,
                bill_no,
                check_code,
                p.total_fen,
                sealed.payer_id_card_hash,
                sealed.payer_card_hash,
                sealed.payer_tel_hash,
                p.cashier,
                p.bus_time,
                issued_at,
                sealed.request_sealed,
                sealed.canonical_sealed,
                CANONICAL_VERSION,
                operator,
                BillStatus.ISSUED,
                sealed.payer_name_hash,
            )
        except asyncpg.UniqueViolationError as exc:
            if "bus_no" in (exc.constraint_name or "") or "unit_code" in (
                exc.constraint_name or ""
            ):
                raise AlreadyExists(
                    f"bill.bus_no: {p.bus_no} is already on a bill of unit {p.unit_code}",
                    field="bill.bus_no",
                ) from exc
            raise AlreadyExists(
                f"bill {bill_code}/{bill_no} is already recorded", field="bill_no"
            ) from exc
        await conn.executemany(
            "INSERT INTO bill_charge_items (bill_id, sort_no, charge_code, charge_name, amt_fen,"
            " self_amt_fen) VALUES ($1, $2, $3, $4, $5, $6)",
            [(bill_id, *row) for row in p.charge_rows],
        )
        await conn.executemany(
            "INSERT INTO bill_pay_channels (bill_id, pay_channel_code, amount_fen)"
            " VALUES ($1, $2, $3)",
            [(bill_id, *row) for row in p.channel_rows],
        )
        await conn.execute(
            "INSERT INTO bill_events (unit_code, place_code, operator, op, bill_id)"
            " VALUES ($1, $2, $3, 'back_entry', $4)",
            p.unit_code,
            p.place_code,
            operator,
            bill_id,
        )
        row = await conn.fetchrow(BILL_SELECT + " WHERE b.id = $1", bill_id)
    assert row is not None
    return row_to_bill(row, ring)


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The instants of local (CST) days ``first`` .. ``last``: [start, end)."""
    start = datetime.combine(first, datetime.min.time(), CST)
    return start, datetime.combine(last + timedelta(days=1), datetime.min.time(), CST)


@dataclass(frozen=True, slots=True)
class BillFilter:
    """What an issuing point (or, with ``place_code`` "", the whole unit: the
    bill office) asks for; empty members do not filter."""

    unit_code: str
    place_code: str  # "": every issuing point of the unit
    payer_id_card_no: str = ""
    payer_tel: str = ""
    payer_card_no: str = ""
    from_date: date | None = None
    to_date: date | None = None
    bill_kind: str = ""
    paper_status: str = ""  # a PaperStatus value; "" for any
    red: str = ""  # normal / red_flushed / red_bill
    payer_name: str = ""  # exact, after normalise_name
    bus_no: str = ""  # the HIS's serial
    bill_code: str = ""
    bill_no: str = ""
    status: str = ""  # a BillStatus value
    limit: int = 100
    after_id: int = 0


async def list_bills(
    pool: asyncpg.Pool, f: BillFilter, ring: KeyRing
) -> tuple[list[IssuedBill], int]:
    """Bills of one issuing point (or of the whole unit), oldest first, and the
    id to continue after (0 at the end).

    Oldest first means by issue time when a period is asked for, else by id.
    The payer is found by the keyed digests of the values asked for (exact
    match, after normalisation); each bill comes with its request opened and
    without its canonical bytes.
    """
    sql, args = _list_query(f, ring, by_time=f.from_date is not None or f.to_date is not None)
    rows = await pool.fetch(sql, *args)
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    bills = [row_to_bill(r, ring, with_canonical=False) for r in rows]
    return bills, (rows[-1]["id"] if more else 0)


def _list_query(f: BillFilter, ring: KeyRing, *, by_time: bool) -> tuple[str, list[Any]]:
    """The SELECT of list_bills and its arguments.

    A period is paged by (issued_at, id), the keyset that bills_unit_time and
    bills_place_time (0018) hold in that order, so a page of one day among ten
    million bills reads about a page of index. Paged by id, PostgreSQL walked
    the primary key from the unit's first bill up to the period (by_time=False
    is that paging, kept for bench/search.py to compare). The page token stays
    the last bill's id; its issued_at is read back by primary key, so callers
    and the tokens they hand out are unchanged.
    """
    where = ["b.unit_code = $1"]
    args: list[Any] = [f.unit_code]

    def add(cond: str, value: Any) -> None:
        args.append(value)
        where.append(cond.replace("?", f"${len(args)}"))

    if by_time:
        if f.after_id:
            # A row comparison of columns against values is an index condition
            # on (.., issued_at, id); against a sub-select's row it is not.
            add("(b.issued_at, b.id) > ((SELECT c.issued_at FROM bills c WHERE c.id = ?), ?)",
                f.after_id)  # fmt: skip
    else:
        add("b.id > ?", f.after_id)
    if f.place_code:
        add("b.place_code = ?", f.place_code)
    if f.payer_name:
        add("b.payer_name_hash = ?", name_digest(ring, f.payer_name))
    if f.bus_no:
        add("b.bus_no = ?", f.bus_no.strip())
    if f.bill_code:
        add("b.bill_code = ?", f.bill_code.strip())
    if f.bill_no:
        add("b.bill_no = ?", f.bill_no.strip())
    if f.status:
        add("b.status = ?", BillStatus(f.status))

    for value, column, purpose in (
        (f.payer_id_card_no, "payer_id_card_hash", ID_CARD),
        (f.payer_tel, "payer_tel_hash", TEL),
        (f.payer_card_no, "payer_card_hash", CARD),
    ):
        digest = ring.index(value, purpose)
        if digest is not None:
            add(f"b.{column} = ?", digest)
    if f.from_date:
        add("b.issued_at >= ?", day_bounds(f.from_date, f.from_date)[0])
    if f.to_date:
        add("b.issued_at < ?", day_bounds(f.to_date, f.to_date)[1])
    if f.bill_kind:
        add("b.bill_kind = ?", f.bill_kind)
    if f.paper_status:
        add("coalesce(p.status, 'none') = ?", PaperStatus(f.paper_status))
    if f.red == "normal":
        where.append(f"b.red_of IS NULL AND b.status <> '{BillStatus.RED_FLUSHED}'")
    elif f.red == "red_flushed":
        where.append(f"b.status = '{BillStatus.RED_FLUSHED}'")
    elif f.red == "red_bill":
        where.append("b.red_of IS NOT NULL")
    args.append(f.limit + 1)
    order = "b.issued_at, b.id" if by_time else "b.id"
    sql = BILL_SELECT + " WHERE " + " AND ".join(where) + f" ORDER BY {order} LIMIT ${len(args)}"
    return sql, args


async def bill_events(pool: asyncpg.Pool, bill_id: int) -> list[dict[str, Any]]:
    """The operation log of one bill, oldest first."""
    rows = await pool.fetch(
        "SELECT op, operator, place_code, paper_code, paper_no, detail, at FROM bill_events"
        " WHERE bill_id = $1 ORDER BY id",
        bill_id,
    )
    return [dict(r) for r in rows]
