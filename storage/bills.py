"""Bills in PostgreSQL: reserving numbers with the bill rows, and lookups.

Each batch is one transaction per hop: the reserve transaction leases numbers
from segments and writes every bill row (status ``reserved``, with its canonical
bytes) before any signature is made, so a leased number always belongs to a
stored bill that can be signed again after a crash. What happens after signing
(the archive statement, the outbox) is storage.archive.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.canonical import CANONICAL_VERSION
from engine.checkcode import new_check_code
from engine.errors import (
    AlreadyExists,
    EbillError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from engine.lifecycle import BillKey, check_red_flush
from engine.model import BillStatus, IssuedBill, Reservation
from engine.numbers import BillNo
from engine.pipeline import Duplicate, Item, Work
from engine.prepare import Prepared
from engine.sealing import KeyRing
from engine.statuses import PaperStatus
from engine.stock import SegmentCursor, plan_lease
from engine.translog import LogEntry, bill_entry
from storage.alerts import evaluate_alerts
from storage.bill_rows import (
    BILL_SELECT,
    content_digest,
    key_where,
    lock_states,
    row_to_bill,
    row_to_work,
    stored_digest,
)
from storage.personal import seal_bill
from storage.translog import append_entries

__all__ = [
    "UNIT_LOCK_SQL",
    "bills_by_id",
    "get_bill",
    "remainder_of",
    "reserve",
]

log = logging.getLogger(__name__)

# A bill in flight is finished by its own batch within a second or two; only
# after this long does the recovery loop consider it abandoned.
OUTBOX_GRACE = timedelta(seconds=30)

UNIT_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('ebill-unit:' || $1, 0))"

_BILL_COLUMNS = (
    "id",
    "unit_code",
    "bus_no",
    "bus_type",
    "bill_kind",
    "place_code",
    "bill_code",
    "bill_no",
    "check_code",
    "segment_id",
    "status",
    "total_fen",
    "payer_id_card_hash",
    "payer_tel_hash",
    "payer_card_hash",
    "payer_name_hash",
    "cashier",
    "bus_time",
    "issued_at",
    "request_sealed",
    "canonical_sealed",
    "canonical_version",
    "red_of",
    "replaces",
    "operator",
)


async def reserve(
    pool: asyncpg.Pool,
    bills: Sequence[tuple[int, Prepared]],
    *,
    ring: KeyRing,
    grace: timedelta = OUTBOX_GRACE,
    atomic: bool = False,
) -> dict[int, Item]:
    """Lease numbers for a batch of validated bills and store them, in one transaction.

    Returns, by caller index: a Work for a new bill or for a bill stored earlier
    under the same (unit_code, bus_no) with the same content (``replayed``), a
    Duplicate for a repeat within the batch, AlreadyExists for a serial reused
    with other content, ResourceExhausted where the issuing point has no stock,
    or InvalidArgument for a bill whose data the database refuses.

    A red bill (``red_of``) is checked against its original under a row lock and
    the original becomes red_flushed in the same transaction (with its paper
    voided when asked), so a bill is cancelled once. With ``atomic`` any failed
    item fails the whole batch and nothing is written (a refund's red bill and
    remainder go together).

    One bill never fails another: the rows are written in a savepoint, and when
    the database refuses the data of some bill (SQLSTATE class 22 or 23) the
    batch is written again in halves, down to the offending bill alone.

    The payer's data is sealed under ``ring`` here, in the batch, with the keyed
    search digests (storage.personal): no plaintext reaches the database.
    """
    out: dict[int, Item] = {}
    async with pool.acquire() as conn, conn.transaction():
        # Serialise reservations per unit, so that the bus_no check below and the
        # insert cannot interleave with another engine's batch for the same unit.
        for unit in sorted({vb.unit_code for _, vb in bills}):
            await conn.execute(UNIT_LOCK_SQL, unit)
        existing = {
            (r["unit_code"], r["bus_no"]): r
            for r in await conn.fetch(
                "SELECT b.* FROM bills b JOIN unnest($1::text[], $2::text[]) AS k(u, n)"
                " ON b.unit_code = k.u AND b.bus_no = k.n",
                [vb.unit_code for _, vb in bills],
                [vb.bus_no for _, vb in bills],
            )
        }
        # The first item of the batch under each serial, and the content it names:
        # the stored bill's where there is one, else the first request's.
        first: dict[tuple[str, str], tuple[int, bytes]] = {}
        fresh: list[tuple[int, Prepared]] = []
        for idx, vb in bills:
            key = (vb.unit_code, vb.bus_no)
            digest = content_digest(vb)
            row = existing.get(key)
            if key in first:
                # One bill travels once per batch, however often it is asked for;
                # the same serial with other content is someone else's bill.
                j, named = first[key]
                out[idx] = Duplicate(j) if digest == named else _reused(vb)
            elif row is None:
                first[key] = (idx, digest)
                fresh.append((idx, vb))
            elif stored_digest(row, ring) == digest:
                first[key] = (idx, digest)
                out[idx] = row_to_work(row, ring, replayed=True)
            else:
                out[idx] = _reused(vb)
        if any(p.red_of for _, p in fresh):
            refused = await _check_red_flushes(conn, fresh)
            out.update(refused)
            fresh = [(idx, p) for idx, p in fresh if idx not in refused]
        if atomic:
            failed = [v for v in out.values() if isinstance(v, EbillError)]
            if failed:
                raise failed[0]  # rolls the transaction back
        out.update(await _write_isolating(conn, fresh, ring, grace, atomic))
    return out


def _reused(p: Prepared) -> AlreadyExists:
    return AlreadyExists(
        f"bus_no: {p.bus_no[:64]} is already on another bill of unit {p.unit_code} with "
        "different content; a serial names one bill (send the same request again to get it)",
        field="bus_no",
    )


# What the database refuses for one bill's data: class 22 (data exception: a NUL
# in text, a value out of range) and 23 (integrity constraint violation).
_DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


def _refused(p: Prepared, exc: asyncpg.PostgresError) -> InvalidArgument:
    detail = str(exc)[:120]
    return InvalidArgument(
        f"the database refused the data of the bill with bus_no {p.bus_no[:64]} "
        f"(SQLSTATE {exc.sqlstate}: {detail}); no other bill is affected"
    )


async def _write_isolating(
    conn: asyncpg.Connection,
    fresh: list[tuple[int, Prepared]],
    ring: KeyRing,
    grace: timedelta,
    atomic: bool,
) -> dict[int, Item]:
    """:func:`_write` in a savepoint; on a data error, each half again, so that
    only the bill whose data is refused fails (log2(n) extra rounds for one bad
    bill; the normal case costs one SAVEPOINT and RELEASE)."""
    if not fresh:
        return {}
    try:
        async with conn.transaction():
            return await _write(conn, fresh, ring, grace, atomic)
    except _DATA_ERRORS as exc:
        if atomic or len(fresh) == 1:
            err = _refused(fresh[0][1], exc)
            if atomic:
                raise err from exc
            log.warning("bill %s refused by the database: %s", fresh[0][1].bus_no[:64], exc)
            return {fresh[0][0]: err}
    mid = len(fresh) // 2
    out = await _write_isolating(conn, fresh[:mid], ring, grace, atomic)
    out.update(await _write_isolating(conn, fresh[mid:], ring, grace, atomic))
    return out


async def _write(
    conn: asyncpg.Connection,
    fresh: list[tuple[int, Prepared]],
    ring: KeyRing,
    grace: timedelta,
    atomic: bool,
) -> dict[int, Item]:
    """Lease numbers for ``fresh`` and write their rows (COPY); by caller index."""
    out: dict[int, Item] = {}
    groups: dict[tuple[str, str, str], list[tuple[int, Prepared]]] = defaultdict(list)
    for idx, vb in fresh:
        groups[(vb.unit_code, vb.place_code, vb.bill_code)].append((idx, vb))

    numbered: list[tuple[int, Prepared, int, int]] = []  # idx, bill, segment, number
    for (unit, place, bill_code), members in groups.items():
        cursors = [
            SegmentCursor(r["id"], r["next_no"], r["end_no"])
            for r in await conn.fetch(
                "SELECT id, next_no, end_no FROM segments"
                " WHERE unit_code = $1 AND place_code = $2 AND bill_code = $3"
                " AND status = 'enabled' AND next_no <= end_no"
                " ORDER BY start_no FOR UPDATE",
                unit,
                place,
                bill_code,
            )
        ]
        leases = plan_lease(cursors, len(members))
        pos = 0
        for lease in leases:
            for k in range(lease.count):
                idx, vb = members[pos]
                numbered.append((idx, vb, lease.segment_id, lease.first_no + k))
                pos += 1
        for idx, _ in members[pos:]:
            out[idx] = ResourceExhausted(
                f"no bill numbers left for bill code {bill_code} at issuing point {place}",
                field="place_code",
            )
        if leases:
            await conn.executemany(
                "UPDATE segments SET next_no = $2 WHERE id = $1",
                [(lease.segment_id, lease.new_next_no) for lease in leases],
            )
    if groups:
        # Low-stock warnings fire in the transaction that crossed the threshold.
        await evaluate_alerts(conn, groups.keys())
    if atomic:
        failed = [v for v in out.values() if isinstance(v, EbillError)]
        if failed:
            raise failed[0]  # rolls the transaction back
    if not numbered:
        return out

    ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT nextval('bills_id_seq') FROM generate_series(1, $1)", len(numbered)
        )
    ]
    now = datetime.now(UTC)
    bill_rows: list[tuple[Any, ...]] = []
    charge_rows: list[tuple[Any, ...]] = []
    channel_rows: list[tuple[Any, ...]] = []
    leaves: list[LogEntry] = []  # the transparency log's leaves, in this transaction
    for bill_id, (idx, p, segment_id, no) in zip(ids, numbered, strict=True):
        res = Reservation(p.bill_code, str(BillNo(no)), new_check_code(), now)
        canon = p.canonical(res)
        sealed = seal_bill(
            ring, bill_id, p.request, canon,
            id_card=p.payer_id_card_no, tel=p.payer_tel, card=p.payer_card_no,
            name=p.payer_name,
        )  # fmt: skip
        bill_rows.append(
            (
                bill_id, p.unit_code, p.bus_no, p.bus_type, p.bill_kind, p.place_code,
                res.bill_code, res.bill_no, res.check_code, segment_id,
                BillStatus.RESERVED.value, p.total_fen, sealed.payer_id_card_hash,
                sealed.payer_tel_hash, sealed.payer_card_hash, sealed.payer_name_hash,
                p.cashier, p.bus_time, now,
                sealed.request_sealed, sealed.canonical_sealed,
                CANONICAL_VERSION, p.red_of or None, p.replaces or None,
                p.operator or p.cashier,
            )
        )  # fmt: skip
        charge_rows.extend((bill_id, *row) for row in p.charge_rows)
        channel_rows.extend((bill_id, *row) for row in p.channel_rows)
        leaves.append(bill_entry(p, res.bill_code, res.bill_no, canon, now, bill_id))
        out[idx] = Work(
            bill_id=bill_id,
            unit_code=p.unit_code,
            bus_no=p.bus_no,
            bus_type=p.bus_type,
            place_code=p.place_code,
            bill_code=res.bill_code,
            bill_no=res.bill_no,
            check_code=res.check_code,
            total_fen=p.total_fen,
            issued_at=now,
            canonical=canon,
            canonical_version=CANONICAL_VERSION,
            status=BillStatus.RESERVED,
            bill_kind=p.bill_kind,
        )
    await conn.copy_records_to_table("bills", records=bill_rows, columns=_BILL_COLUMNS)
    await conn.copy_records_to_table(
        "bill_charge_items",
        records=charge_rows,
        columns=("bill_id", "sort_no", "charge_code", "charge_name", "amt_fen", "self_amt_fen"),
    )
    await conn.copy_records_to_table(
        "bill_pay_channels",
        records=channel_rows,
        columns=("bill_id", "pay_channel_code", "amount_fen"),
    )
    await conn.copy_records_to_table(
        "outbox",
        records=[(bill_id, now + grace) for bill_id in ids],
        columns=("bill_id", "next_attempt_at"),
    )
    await append_entries(conn, leaves)
    lifecycle = [
        (bill_id, p) for bill_id, (_, p, _, _) in zip(ids, numbered, strict=True) if p.op != "issue"
    ]
    if lifecycle:
        await _apply_lifecycle(conn, lifecycle)
    return out


async def _check_red_flushes(
    conn: asyncpg.Connection, fresh: list[tuple[int, Prepared]]
) -> dict[int, EbillError]:
    """Lock the originals of the red bills in ``fresh`` and refuse those that may
    not be red-flushed now; by caller index."""
    reds = [(idx, p) for idx, p in fresh if p.red_of]
    states = await lock_states(conn, [p.red_of for _, p in reds])
    refused: dict[int, EbillError] = {}
    taken: set[int] = set()
    for idx, p in reds:
        state = states.get(p.red_of)
        err: EbillError | None
        if state is None:
            err = NotFound(f"no original bill with id {p.red_of}")
        elif p.red_of in taken:
            err = FailedPrecondition(f"{state.label} is red-flushed twice in one request")
        else:
            err = check_red_flush(state, void_paper=p.void_paper)
        if err is not None:
            refused[idx] = err
        taken.add(p.red_of)
    return refused


async def _apply_lifecycle(conn: asyncpg.Connection, made: list[tuple[int, Prepared]]) -> None:
    """What a lifecycle bill does to its original, and the operation log."""
    cancelled = [p.red_of for _, p in made if p.red_of]
    if cancelled:
        await conn.execute(
            "UPDATE bills SET status = $2 WHERE id = ANY($1::bigint[])",
            cancelled,
            BillStatus.RED_FLUSHED,
        )
    void = [(p.red_of, p.operator) for _, p in made if p.red_of and p.void_paper]
    events: list[tuple[Any, ...]] = []
    if void:
        for r in await conn.fetch(
            "UPDATE paper_bills p SET status = $3, voided_at = now(),"
            " void_reason = 'voided with red-flush', operator = u.op"
            " FROM unnest($1::bigint[], $2::text[]) AS u(bill_id, op)"
            " WHERE p.bill_id = u.bill_id AND p.status = $4"
            " RETURNING p.bill_id, p.paper_code, p.paper_no, p.unit_code, p.place_code, u.op",
            [b for b, _ in void],
            [o for _, o in void],
            PaperStatus.VOIDED,
            PaperStatus.PRINTED,
        ):
            events.append(
                (r["unit_code"], r["place_code"], r["op"], "void_paper", r["bill_id"],
                 r["paper_code"], r["paper_no"], {"reason": "voided with red-flush"})
            )  # fmt: skip
    for bill_id, p in made:
        detail = {"red_of": p.red_of} if p.red_of else {"replaces": p.replaces}
        events.append((p.unit_code, p.place_code, p.operator, p.op, bill_id, None, None, detail))
    await conn.copy_records_to_table(
        "bill_events",
        records=events,
        columns=(
            "unit_code", "place_code", "operator", "op", "bill_id", "paper_code", "paper_no",
            "detail",
        ),
    )  # fmt: skip


async def get_bill(pool: asyncpg.Pool, key: BillKey, ring: KeyRing) -> IssuedBill | None:
    """A bill with its request and canonical bytes opened."""
    where, args = key_where(key)
    row = await pool.fetchrow(BILL_SELECT + where, *args)
    return None if row is None else row_to_bill(row, ring)


async def bills_by_id(pool: asyncpg.Pool, ids: Sequence[int], ring: KeyRing) -> list[IssuedBill]:
    """Bills by id in one query, in the order asked (every id must exist)."""
    rows = {r["id"]: r for r in await pool.fetch(BILL_SELECT + " WHERE b.id = ANY($1)", ids)}
    return [row_to_bill(rows[i], ring) for i in ids]


async def remainder_of(pool: asyncpg.Pool, bill_id: int, ring: KeyRing) -> IssuedBill | None:
    """The bill a refund issued for what was kept of bill ``bill_id``, if any."""
    row = await pool.fetchrow(BILL_SELECT + " WHERE b.replaces = $1", bill_id)
    return None if row is None else row_to_bill(row, ring)
