"""Paper stock of issuing points and the paper bills printed from it.

Each operation is one transaction that locks the bill row (and the paper stock
rows it draws from), asks engine.lifecycle whether it may proceed, and writes
the paper bill, the bill's paper pointer and an event together, or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from engine.lifecycle import BillKey, BillState, check_convert, check_own, check_printed
from engine.numbers import BillNo, NumberRange
from engine.statuses import PaperStatus
from storage.bill_rows import lock_state_by_key

__all__ = [
    "PaperOutcome",
    "PaperRange",
    "convert_to_paper",
    "paper_stock",
    "receive_paper",
    "reissue_paper",
    "reprint",
    "void_blank",
    "void_paper",
]

# How many blanks one call may void: a typo in a range must not void a year's paper.
MAX_BLANK_VOID = 10_000
_WINDOW = 1_000


@dataclass(frozen=True, slots=True)
class PaperRange:
    id: int
    paper_code: str
    start_no: int
    end_no: int
    next_no: int | None  # None when every number of the range is used
    remaining: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class PaperOutcome:
    bill_id: int
    paper_code: str
    paper_no: str
    prints: int


async def _owned(
    conn: asyncpg.Connection, key: BillKey, unit_code: str, place_code: str
) -> BillState:
    state = await lock_state_by_key(conn, key)
    if state is None:
        raise NotFound(f"no {key.describe()}", field="bill")
    check_own(state, unit_code, place_code)
    return state


async def _event(
    conn: asyncpg.Connection,
    state: BillState | None,
    *,
    unit_code: str,
    place_code: str,
    operator: str,
    op: str,
    paper_code: str,
    paper_no: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO bill_events (unit_code, place_code, operator, op, bill_id, paper_code,"
        " paper_no, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        unit_code,
        place_code,
        operator,
        op,
        state.bill_id if state else None,
        paper_code,
        paper_no,
        detail or {},
    )


async def _used(conn: asyncpg.Connection, code: str, lo: int, hi: int) -> set[int]:
    rows = await conn.fetch(
        "SELECT paper_no FROM paper_bills WHERE paper_code = $1 AND paper_no BETWEEN $2 AND $3",
        code,
        str(BillNo(lo)),
        str(BillNo(hi)),
    )
    return {int(r[0]) for r in rows}


async def _first_blank(conn: asyncpg.Connection, code: str, start: int, end: int) -> int | None:
    """The lowest number in [start, end] with no paper bill (printed or voided)."""
    lo = start
    while lo <= end:
        hi = min(end, lo + _WINDOW - 1)
        used = await _used(conn, code, lo, hi)
        for n in range(lo, hi + 1):
            if n not in used:
                return n
        lo = hi + 1
    return None


async def _take(conn: asyncpg.Connection, unit_code: str, place_code: str) -> tuple[int, str, int]:
    """The next blank paper number of the issuing point: (stock id, code, number).
    Oldest range first; locks the range."""
    for r in await conn.fetch(
        "SELECT id, paper_code, next_no, end_no FROM paper_stock"
        " WHERE unit_code = $1 AND place_code = $2 AND next_no <= end_no"
        " ORDER BY received_at, id FOR UPDATE",
        unit_code,
        place_code,
    ):
        n = await _first_blank(conn, r["paper_code"], r["next_no"], r["end_no"])
        if n is None:
            await conn.execute("UPDATE paper_stock SET next_no = end_no + 1 WHERE id = $1", r["id"])
            continue
        await conn.execute("UPDATE paper_stock SET next_no = $2 WHERE id = $1", r["id"], n + 1)
        return r["id"], r["paper_code"], n
    raise ResourceExhausted(
        f"issuing point {place_code} has no blank paper left; receive paper first",
        field="operator.place_code",
    )


async def _print_next(conn: asyncpg.Connection, state: BillState, operator: str) -> tuple[str, str]:
    """Print the bill on the next blank of its issuing point; the bill's paper
    pointer moves there (and its conversion time is set the first time)."""
    stock_id, code, n = await _take(conn, state.unit_code, state.place_code)
    no = str(BillNo(n))
    await conn.execute(
        "INSERT INTO paper_bills (paper_code, paper_no, unit_code, place_code, stock_id,"
        " bill_id, status, prints, printed_at, operator)"
        " VALUES ($1, $2, $3, $4, $5, $6, $8, 1, now(), $7)",
        code,
        no,
        state.unit_code,
        state.place_code,
        stock_id,
        state.bill_id,
        operator,
        PaperStatus.PRINTED,
    )
    await conn.execute(
        "UPDATE bills SET paper_code = $2, paper_no = $3,"
        " converted_at = coalesce(converted_at, now()) WHERE id = $1",
        state.bill_id,
        code,
        no,
    )
    return code, no


async def receive_paper(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str,
    paper_code: str,
    start_no: int,
    end_no: int,
    operator: str,
) -> int:
    """Record a range of blank paper received by an issuing point; its id."""
    numbers = NumberRange.of(start_no, end_no)
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(
            "SELECT 1 FROM issuing_points WHERE unit_code = $1 AND place_code = $2",
            unit_code,
            place_code,
        ):
            raise NotFound(
                f"no issuing point {place_code} in unit {unit_code}", field="operator.place_code"
            )
        try:
            stock_id = int(
                await conn.fetchval(
                    "INSERT INTO paper_stock (unit_code, place_code, paper_code, start_no, end_no,"
                    " next_no, operator) VALUES ($1, $2, $3, $4, $5, $4, $6) RETURNING id",
                    unit_code,
                    place_code,
                    paper_code,
                    start_no,
                    end_no,
                    operator,
                )
            )
        except asyncpg.ExclusionViolationError as exc:
            raise AlreadyExists(
                f"paper {paper_code} {numbers} overlaps paper already received",
                field="start_no",
            ) from exc
        await _event(
            conn,
            None,
            unit_code=unit_code,
            place_code=place_code,
            operator=operator,
            op="receive_paper",
            paper_code=paper_code,
            paper_no=str(numbers.start),
            detail={"end_no": str(numbers.end)},
        )
        return stock_id


async def paper_stock(pool: asyncpg.Pool, unit_code: str, place_code: str) -> list[PaperRange]:
    """The paper ranges of an issuing point with their next blank and blanks left."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT s.id, s.paper_code, s.start_no, s.end_no, s.next_no, s.received_at,"
            " (s.end_no - s.next_no + 1) - (SELECT count(*) FROM paper_bills p"
            "   WHERE p.paper_code = s.paper_code"
            "   AND p.paper_no BETWEEN lpad(s.next_no::text, 10, '0')"
            "   AND lpad(s.end_no::text, 10, '0')) AS remaining"
            " FROM paper_stock s WHERE s.unit_code = $1 AND s.place_code = $2"
            " ORDER BY s.received_at, s.id",
            unit_code,
            place_code,
        )
        out = []
        for r in rows:
            remaining = max(0, int(r["remaining"]))
            nxt = (
                await _first_blank(conn, r["paper_code"], r["next_no"], r["end_no"])
                if remaining
                else None
            )
            out.append(
                PaperRange(
                    id=r["id"],
                    paper_code=r["paper_code"],
                    start_no=r["start_no"],
                    end_no=r["end_no"],
                    next_no=nxt,
                    remaining=remaining,
                    received_at=r["received_at"],
                )
            )
    return out


async def convert_to_paper(
    pool: asyncpg.Pool, key: BillKey, *, unit_code: str, place_code: str, operator: str
) -> PaperOutcome:
    """Print an e-bill on the next blank paper number; once per bill."""
    async with pool.acquire() as conn, conn.transaction():
        state = await _owned(conn, key, unit_code, place_code)
        check_convert(state)
        code, no = await _print_next(conn, state, operator)
        await _event(
            conn,
            state,
            unit_code=unit_code,
            place_code=place_code,
            operator=operator,
            op="convert_to_paper",
            paper_code=code,
            paper_no=no,
        )
        return PaperOutcome(state.bill_id, code, no, 1)


async def reprint(
    pool: asyncpg.Pool, key: BillKey, *, unit_code: str, place_code: str, operator: str
) -> PaperOutcome:
    """Print again on the same paper number (the printer jammed, no paper consumed)."""
    async with pool.acquire() as conn, conn.transaction():
        state = await _owned(conn, key, unit_code, place_code)
        check_printed(state)
        prints = await conn.fetchval(
            "UPDATE paper_bills SET prints = prints + 1 WHERE paper_code = $1 AND paper_no = $2"
            " RETURNING prints",
            state.paper_code,
            state.paper_no,
        )
        await _event(
            conn,
            state,
            unit_code=unit_code,
            place_code=place_code,
            operator=operator,
            op="reprint",
            paper_code=state.paper_code,
            paper_no=state.paper_no,
        )
        return PaperOutcome(state.bill_id, state.paper_code, state.paper_no, int(prints))


async def _void_current(
    conn: asyncpg.Connection, state: BillState, operator: str, reason: str
) -> None:
    await conn.execute(
        "UPDATE paper_bills SET status = $5, voided_at = now(), void_reason = $3,"
        " operator = $4 WHERE paper_code = $1 AND paper_no = $2 AND status = $6",
        state.paper_code,
        state.paper_no,
        reason,
        operator,
        PaperStatus.VOIDED,
        PaperStatus.PRINTED,
    )


async def reissue_paper(
    pool: asyncpg.Pool,
    key: BillKey,
    *,
    unit_code: str,
    place_code: str,
    operator: str,
    reason: str,
) -> PaperOutcome:
    """Void the damaged paper bill and print the e-bill on the next paper number."""
    async with pool.acquire() as conn, conn.transaction():
        state = await _owned(conn, key, unit_code, place_code)
        check_printed(state)
        await _void_current(conn, state, operator, reason or "damaged, reissued")
        code, no = await _print_next(conn, state, operator)
        await _event(
            conn,
            state,
            unit_code=unit_code,
            place_code=place_code,
            operator=operator,
            op="reissue_paper",
            paper_code=code,
            paper_no=no,
            detail={"voided": f"{state.paper_code}/{state.paper_no}", "reason": reason},
        )
        return PaperOutcome(state.bill_id, code, no, 1)


async def void_paper(
    pool: asyncpg.Pool,
    key: BillKey,
    *,
    unit_code: str,
    place_code: str,
    operator: str,
    reason: str,
) -> PaperOutcome:
    """Void the paper bill of a converted e-bill (before a red-flush, say)."""
    async with pool.acquire() as conn, conn.transaction():
        state = await _owned(conn, key, unit_code, place_code)
        check_printed(state)
        await _void_current(conn, state, operator, reason)
        await _event(
            conn,
            state,
            unit_code=unit_code,
            place_code=place_code,
            operator=operator,
            op="void_paper",
            paper_code=state.paper_code,
            paper_no=state.paper_no,
            detail={"reason": reason},
        )
        prints = await conn.fetchval(
            "SELECT prints FROM paper_bills WHERE paper_code = $1 AND paper_no = $2",
            state.paper_code,
            state.paper_no,
        )
        return PaperOutcome(state.bill_id, state.paper_code, state.paper_no, int(prints))


async def void_blank(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str,
    paper_code: str,
    start_no: int,
    end_no: int,
    operator: str,
    reason: str,
) -> None:
    """Void a range of blank paper of the issuing point; every number must be blank."""
    numbers = NumberRange.of(start_no, end_no)
    count = numbers.count
    if count > MAX_BLANK_VOID:
        raise InvalidArgument(
            f"end_no: at most {MAX_BLANK_VOID} blanks per call, got {count}", field="end_no"
        )
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, next_no FROM paper_stock WHERE unit_code = $1 AND place_code = $2"
            " AND paper_code = $3 AND start_no <= $4 AND end_no >= $5 FOR UPDATE",
            unit_code,
            place_code,
            paper_code,
            start_no,
            end_no,
        )
        if row is None:
            raise NotFound(
                f"paper {paper_code} {numbers} is not within one range "
                f"received by issuing point {place_code}",
                field="start_no",
            )
        # Numbers below a range's cursor all have a paper bill row, so this finds
        # every number of the range that is not blank.
        used = await _used(conn, paper_code, start_no, end_no)
        if used:
            raise FailedPrecondition(
                f"paper {paper_code}/{BillNo(min(used))} is not blank; only blank paper is voided "
                "here (void a printed bill's paper with VoidPaper)",
                field="start_no",
            )
        await conn.copy_records_to_table(
            "paper_bills",
            records=[
                (paper_code, str(BillNo(n)), unit_code, place_code, row["id"],
                 PaperStatus.VOIDED, reason, operator, datetime.now().astimezone())
                for n in range(start_no, end_no + 1)
            ],
            columns=(
                "paper_code", "paper_no", "unit_code", "place_code", "stock_id", "status",
                "void_reason", "operator", "voided_at",
            ),
        )  # fmt: skip
        await _event(
            conn,
            None,
            unit_code=unit_code,
            place_code=place_code,
            operator=operator,
            op="void_blank_paper",
            paper_code=paper_code,
            paper_no=str(numbers.start),
            detail={"end_no": str(numbers.end), "reason": reason},
        )
