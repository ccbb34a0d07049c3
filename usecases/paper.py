"""Paper bills at an issuing point: blank stock received and voided, e-bills
printed on paper (换开), printed again, reissued on new paper, paper voided."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from config.tuning import MAX_PAPER_RANGE
from engine.errors import InvalidArgument, NotFound
from engine.lifecycle import BillKey
from engine.model import IssuedBill
from engine.numbers import BillNo, NumberRange
from engine.operator import Operator
from engine.sealing import KeyRing
from storage import bills as bill_store
from storage import paper
from storage.paper import PaperRange

__all__ = ["Paper", "PaperOp", "PaperPrinted", "PaperRange", "PaperStock"]


class PaperOp(StrEnum):
    """What is done to one bill's paper."""

    CONVERT = "convert"
    REPRINT = "reprint"
    REISSUE = "reissue"
    VOID = "void"


@dataclass(frozen=True, slots=True)
class PaperStock:
    """An issuing point's blank paper: its ranges and the number printed next."""

    ranges: list[PaperRange]
    next_paper_code: str  # empty when no blank is left
    next_paper_no: BillNo | None
    remaining: int


@dataclass(frozen=True, slots=True)
class PaperPrinted:
    """A bill after a paper operation, with the paper it is (or was) on."""

    bill: IssuedBill
    paper_code: str
    paper_no: str
    prints: int


class Paper:
    def __init__(self, pool: asyncpg.Pool, ring: KeyRing) -> None:
        self._pool = pool
        self._ring = ring  # opens the bill's sealed data

    async def receive(self, op: Operator, paper_code: str, numbers: NumberRange) -> PaperRange:
        """Record blank paper received by the operator's issuing point."""
        if numbers.count > MAX_PAPER_RANGE:
            raise InvalidArgument(
                f"end_no: at most {MAX_PAPER_RANGE} paper numbers per range", field="end_no"
            )
        stock_id = await paper.receive_paper(
            self._pool,
            unit_code=op.unit_code,
            place_code=op.place_code,
            paper_code=paper_code,
            start_no=int(numbers.start),
            end_no=int(numbers.end),
            operator=op.person,
        )
        ranges = await paper.paper_stock(self._pool, op.unit_code, op.place_code)
        return next(r for r in ranges if r.id == stock_id)

    async def stock(self, op: Operator) -> PaperStock:
        ranges = await paper.paper_stock(self._pool, op.unit_code, op.place_code)
        nxt = next((r for r in ranges if r.next_no is not None), None)
        return PaperStock(
            ranges=ranges,
            next_paper_code=nxt.paper_code if nxt else "",
            next_paper_no=BillNo(nxt.next_no) if nxt and nxt.next_no is not None else None,
            remaining=sum(r.remaining for r in ranges),
        )

    async def on_bill(
        self, op: Operator, key: BillKey, what: PaperOp, reason: str = ""
    ) -> PaperPrinted:
        """Convert, reprint, reissue or void the paper of one bill. Reissuing and
        voiding need a reason: the damaged paper is kept with it."""
        if what in (PaperOp.VOID, PaperOp.REISSUE) and not reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        where = {"unit_code": op.unit_code, "place_code": op.place_code, "operator": op.person}
        if what is PaperOp.CONVERT:
            out = await paper.convert_to_paper(self._pool, key, **where)
        elif what is PaperOp.REPRINT:
            out = await paper.reprint(self._pool, key, **where)
        elif what is PaperOp.REISSUE:
            out = await paper.reissue_paper(self._pool, key, **where, reason=reason)
        else:
            out = await paper.void_paper(self._pool, key, **where, reason=reason)
        bill = await bill_store.get_bill(self._pool, key, self._ring)
        if bill is None:
            raise NotFound(f"no {key.describe()}")
        return PaperPrinted(bill, out.paper_code, out.paper_no, out.prints)

    async def void_blank(
        self, op: Operator, paper_code: str, numbers: NumberRange, reason: str
    ) -> PaperStock:
        """Void blank paper numbers (torn, lost); returns the stock after."""
        if not reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        await paper.void_blank(
            self._pool,
            unit_code=op.unit_code,
            place_code=op.place_code,
            paper_code=paper_code,
            start_no=int(numbers.start),
            end_no=int(numbers.end),
            operator=op.person,
            reason=reason,
        )
        return await self.stock(op)
