"""The figures of the finance reports, each one set-based query over the tables
the engine writes anyway: no report table to keep in step.

Days are local (CST) days, as in the write-off declaration (storage.lifecycle.
day_bounds). Money is integer fen. A red bill the platform refused ('rejected')
cancelled nothing: it is left out of money figures, but its number was used, so
the stock flow counts it (the stock identity does too: next_no moved).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

import asyncpg

from engine.model import CST
from storage.lifecycle import day_bounds

__all__ = [
    "BackEntryRow",
    "IssuanceGroup",
    "IssuanceRow",
    "PaperRow",
    "StockFlowRow",
    "TrendRow",
    "TrendStep",
    "back_entries",
    "issuance",
    "paper_usage",
    "stock_flow",
    "trend",
]


class IssuanceGroup(StrEnum):
    """What the issuance report is grouped by."""

    DAY = "day"
    PLACE = "place"
    CASHIER = "cashier"
    BUS_TYPE = "bus_type"
    PAY_CHANNEL = "pay_channel"


class TrendStep(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class IssuanceRow:
    key: str
    bills: int  # blue bills issued
    issued_fen: int
    reds: int  # red bills (negative amounts)
    red_fen: int

    @property
    def net_fen(self) -> int:
        return self.issued_fen + self.red_fen


@dataclass(frozen=True, slots=True)
class StockFlowRow:
    """收发存 of one bill code over a period: opening + received = issued +
    voided + returned + closing, in numbers."""

    bill_code: str
    opening: int
    received: int
    issued: int
    voided: int
    returned: int
    closing: int


@dataclass(frozen=True, slots=True)
class PaperRow:
    place_code: str
    paper_code: str
    received: int
    printed: int
    voided: int
    blank: int  # still on the pile now


@dataclass(frozen=True, slots=True)
class BackEntryRow:
    bill_code: str
    bill_no: str
    place_code: str
    total_fen: int
    operator: str
    issued_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class TrendRow:
    at: datetime  # start of the hour or local day
    bills: int


# The SQL expression of each issuance grouping over bills b (and channels c).
_KEYS = {
    IssuanceGroup.DAY: "to_char(b.issued_at AT TIME ZONE INTERVAL '+08:00', 'YYYY-MM-DD')",
    IssuanceGroup.PLACE: "b.place_code",
    IssuanceGroup.CASHIER: "b.cashier",
    IssuanceGroup.BUS_TYPE: "b.bus_type",
    IssuanceGroup.PAY_CHANNEL: "c.pay_channel_code",
}


async def issuance(
    pool: asyncpg.Pool,
    unit_code: str,
    first: date,
    last: date,
    by: IssuanceGroup,
    *,
    place_code: str = "",
) -> list[IssuanceRow]:
    """Bills issued by this engine in local days first..last, grouped. By pay
    channel the money is each channel's share; the counts are of bills paid
    (partly) through it."""
    lo, hi = day_bounds(first, last)
    amount = "c.amount_fen" if by is IssuanceGroup.PAY_CHANNEL else "b.total_fen"
    join = (
        " JOIN bill_pay_channels c ON c.bill_id = b.id" if by is IssuanceGroup.PAY_CHANNEL else ""
    )
    rows = await pool.fetch(
        f"SELECT {_KEYS[by]} AS key,"
        " count(*) FILTER (WHERE b.red_of IS NULL) AS bills,"
        f" coalesce(sum({amount}) FILTER (WHERE b.red_of IS NULL), 0) AS issued_fen,"
        " count(*) FILTER (WHERE b.red_of IS NOT NULL) AS reds,"
        f" coalesce(sum({amount}) FILTER (WHERE b.red_of IS NOT NULL), 0) AS red_fen"
        f" FROM bills b{join}"
        " WHERE b.unit_code = $1 AND b.origin = 'engine' AND b.status IN ('issued', 'red_flushed')"
        " AND b.issued_at >= $2 AND b.issued_at < $3 AND ($4 = '' OR b.place_code = $4)"
        " GROUP BY 1 ORDER BY 1",
        unit_code,
        lo,
        hi,
        place_code,
    )
    return [
        IssuanceRow(
            key=str(r["key"]),
            bills=int(r["bills"]),
            issued_fen=int(r["issued_fen"]),
            reds=int(r["reds"]),
            red_fen=int(r["red_fen"]),
        )
        for r in rows
    ]


# Each movement of the unit's numbers up to an instant $2, per bill code.
# received: granted by the platform (and opening stock entered at go-live);
# issued: numbers on bills, and numbers used before go-live (opening stock, at
# the moment its confirmation recorded the grant);
# voided and returned: confirmed movements out of stock.
_MOVED_BEFORE = """
SELECT bill_code,
  coalesce(sum(n) FILTER (WHERE kind = 'received'), 0) AS received,
  coalesce(sum(n) FILTER (WHERE kind = 'issued'), 0) AS issued,
  coalesce(sum(n) FILTER (WHERE kind = 'voided'), 0) AS voided,
  coalesce(sum(n) FILTER (WHERE kind = 'returned'), 0) AS returned
FROM (
  SELECT bill_code, 'received' AS kind, end_no - start_no + 1 AS n, recorded_at AS at
    FROM segment_grants WHERE unit_code = $1
  UNION ALL
  SELECT bill_code, 'issued', 1, issued_at FROM bills
    WHERE unit_code = $1 AND segment_id IS NOT NULL
  UNION ALL
  SELECT o.bill_code, 'issued', o.next_no - o.start_no, g.recorded_at
    FROM opening_stock o JOIN segment_grants g ON g.grant_id = 'opening-' || o.id
    WHERE o.unit_code = $1 AND o.status = 'confirmed'
  UNION ALL
  SELECT bill_code, 'voided', end_no - start_no + 1, at FROM stock_events
    WHERE unit_code = $1 AND op = 'void'
  UNION ALL
  SELECT bill_code, 'returned', end_no - start_no + 1, at FROM stock_events
    WHERE unit_code = $1 AND op = 'return_confirmed'
) m
WHERE at < $2
GROUP BY bill_code
"""


async def stock_flow(
    pool: asyncpg.Pool, unit_code: str, first: date, last: date
) -> list[StockFlowRow]:
    """收发存 per bill code of the unit over local days first..last."""
    lo, hi = day_bounds(first, last)
    before = {r["bill_code"]: r for r in await pool.fetch(_MOVED_BEFORE, unit_code, lo)}
    upto = {r["bill_code"]: r for r in await pool.fetch(_MOVED_BEFORE, unit_code, hi)}
    out = []
    for code in sorted(set(before) | set(upto)):
        b, u = before.get(code), upto.get(code)

        def moved(kind: str, r: asyncpg.Record | None) -> int:
            return int(r[kind]) if r is not None else 0

        opening = sum(
            sign * moved(k, b)
            for k, sign in (("received", 1), ("issued", -1), ("voided", -1), ("returned", -1))
        )
        received, issued, voided, returned = (
            moved(k, u) - moved(k, b) for k in ("received", "issued", "voided", "returned")
        )
        out.append(
            StockFlowRow(
                bill_code=code,
                opening=opening,
                received=received,
                issued=issued,
                voided=voided,
                returned=returned,
                closing=opening + received - issued - voided - returned,
            )
        )
    return out


async def paper_usage(
    pool: asyncpg.Pool, unit_code: str, first: date, last: date, *, place_code: str = ""
) -> list[PaperRow]:
    """Paper received, printed on and voided in the period, per point and paper
    code, with the blanks left now."""
    lo, hi = day_bounds(first, last)
    rows = await pool.fetch(
        "WITH s AS (SELECT place_code, paper_code,"
        "   coalesce(sum(end_no - start_no + 1) FILTER (WHERE received_at >= $2"
        "     AND received_at < $3), 0) AS received,"
        "   sum(end_no - next_no + 1) AS pile"
        "   FROM paper_stock WHERE unit_code = $1 GROUP BY 1, 2),"
        " p AS (SELECT paper_bills.place_code, paper_bills.paper_code,"
        "   count(*) FILTER (WHERE printed_at >= $2 AND printed_at < $3) AS printed,"
        "   count(*) FILTER (WHERE voided_at >= $2 AND voided_at < $3) AS voided,"
        # Sheets above a stock's cursor already taken (offline bills take a named
        # blank, issue #11 item 1) are not blanks any more.
        "   count(*) FILTER (WHERE st.next_no <= paper_no::bigint) AS above"
        "   FROM paper_bills LEFT JOIN paper_stock st ON st.id = paper_bills.stock_id"
        "   WHERE paper_bills.unit_code = $1 GROUP BY 1, 2)"
        " SELECT s.place_code, s.paper_code, s.received, coalesce(p.printed, 0) AS printed,"
        " coalesce(p.voided, 0) AS voided, s.pile - coalesce(p.above, 0) AS blank"
        " FROM s LEFT JOIN p USING (place_code, paper_code)"
        " WHERE $4 = '' OR s.place_code = $4 ORDER BY 1, 2",
        unit_code,
        lo,
        hi,
        place_code,
    )
    return [
        PaperRow(
            place_code=r["place_code"],
            paper_code=r["paper_code"],
            received=int(r["received"]),
            printed=int(r["printed"]),
            voided=int(r["voided"]),
            blank=int(r["blank"]),
        )
        for r in rows
    ]


async def back_entries(
    pool: asyncpg.Pool, unit_code: str, first: date, last: date, *, place_code: str = ""
) -> list[BackEntryRow]:
    """Bills entered back (原票补录) in the period."""
    lo, hi = day_bounds(first, last)
    rows = await pool.fetch(
        "SELECT bill_code, bill_no, place_code, total_fen, operator, issued_at, status"
        " FROM bills WHERE unit_code = $1 AND origin = 'back_entry'"
        " AND issued_at >= $2 AND issued_at < $3 AND ($4 = '' OR place_code = $4)"
        " ORDER BY issued_at, bill_code, bill_no",
        unit_code,
        lo,
        hi,
        place_code,
    )
    return [
        BackEntryRow(
            bill_code=r["bill_code"],
            bill_no=r["bill_no"],
            place_code=r["place_code"],
            total_fen=int(r["total_fen"]),
            operator=r["operator"],
            issued_at=r["issued_at"],
            status=r["status"],
        )
        for r in rows
    ]


async def trend(
    pool: asyncpg.Pool, unit_code: str, first: date, last: date, step: TrendStep
) -> list[TrendRow]:
    """Bills (blue and red) issued per hour or per local day: the peak trend."""
    lo, hi = day_bounds(first, last)
    rows = await pool.fetch(
        f"SELECT date_trunc('{step.value}', issued_at AT TIME ZONE INTERVAL '+08:00') AS at,"
        " count(*) AS bills FROM bills WHERE unit_code = $1 AND origin = 'engine'"
        " AND status IN ('issued', 'red_flushed') AND issued_at >= $2 AND issued_at < $3"
        " GROUP BY 1 ORDER BY 1",
        unit_code,
        lo,
        hi,
    )
    return [TrendRow(at=r["at"].replace(tzinfo=CST), bills=int(r["bills"])) for r in rows]
