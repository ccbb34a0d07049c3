"""What the vendor-compatible gateway needs beyond issuance, lifecycle and paper:
asynchronous batches (accepted at once, issued behind, asked about later) and
one business day's totals for the HIS's daily reconciliation.

Domain values in and out; ebill/http/gateway/ translates the vendor's JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import IntEnum

import asyncpg

from engine.errors import EbillError, InvalidArgument, NotFound
from engine.lifecycle import BillKey
from engine.model import IssuedBill
from storage import bills as bill_store
from storage import gateway as store
from storage.gateway import Listed, PageQuery
from usecases.issuance import Issuance

__all__ = [
    "MAX_LIST_DAYS",
    "BatchItem",
    "BatchState",
    "DayRun",
    "DayTotals",
    "Gateway",
    "Listed",
    "PageQuery",
    "runs",
]

log = logging.getLogger(__name__)

# The longest range a vendor listing covers (the specification limits
# getEBillPrintList to a week; a month bounds the others).
MAX_LIST_DAYS = 31


class BatchState(IntEnum):
    """The vendor's status of one bill of a batch."""

    NOT_GENERATED = 0
    GENERATED = 1
    FAILED = 2


@dataclass(frozen=True, slots=True)
class BatchItem:
    bus_no: str
    state: BatchState
    bill: IssuedBill | None = None
    error_code: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class DayRun:
    """Consecutive numbers of one bill code issued at one point for one business type."""

    bus_type: str
    place_code: str
    bill_code: str
    first_no: int
    last_no: int
    count: int
    total_fen: int


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: date
    count: int
    total_fen: int
    runs: tuple[DayRun, ...]


def runs(bills: Sequence[store.DayBill]) -> list[DayRun]:
    """Cut bills ordered by (bus_type, place, bill code, number) into runs of
    consecutive numbers: what the vendor's billNoList reports as bgnNo..endNo."""
    out: list[DayRun] = []
    for b in bills:
        last = out[-1] if out else None
        if (
            last is not None
            and (last.bus_type, last.place_code, last.bill_code)
            == (b.bus_type, b.place_code, b.bill_code)
            and b.bill_no == last.last_no + 1
        ):
            out[-1] = DayRun(
                last.bus_type,
                last.place_code,
                last.bill_code,
                last.first_no,
                b.bill_no,
                last.count + 1,
                last.total_fen + abs(b.total_fen),
            )
        else:
            out.append(
                DayRun(
                    b.bus_type, b.place_code, b.bill_code, b.bill_no, b.bill_no, 1, abs(b.total_fen)
                )
            )
    return out


class Gateway:
    def __init__(self, pool: asyncpg.Pool, issuance: Issuance) -> None:
        self._pool = pool
        self._issuance = issuance
        # Batches being issued by this process (unit, batch_no) -> task.
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def submit_batch(
        self,
        *,
        app_id: str,
        unit_code: str,
        batch_no: str,
        method: str,
        bus_nos: Sequence[str],
        raws: Sequence[bytes],
    ) -> None:
        """Record the batch and issue it behind the answer. A batch number sent
        again with the same bills is the same batch: if it is unfinished and not
        running here (the engine restarted), it is issued again, and every bill
        already issued comes back as it was (bus_no is the idempotency key)."""
        new = await store.record_batch(
            self._pool,
            unit_code=unit_code,
            batch_no=batch_no,
            app_id=app_id,
            method=method,
            bus_nos=bus_nos,
        )
        key = (unit_code, batch_no)
        if not new:
            known = await store.load_batch(self._pool, unit_code, batch_no)
            if known is None or known.finished or key in self._running:
                return
        task = asyncio.create_task(self._run(unit_code, batch_no, list(bus_nos), list(raws)))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def _run(
        self, unit_code: str, batch_no: str, bus_nos: list[str], raws: list[bytes]
    ) -> None:
        try:
            outcomes = await self._issuance.issue_batch(raws)
        except EbillError as exc:
            # The whole batch refused (queue full, deadline): it stays unfinished
            # and each bill "not generated"; the HIS sends the batch again.
            log.warning("gateway batch %s/%s not issued: %s", unit_code, batch_no, exc.message)
            return
        failures = [
            (bus_no, out.code, out.message)
            for bus_no, out in zip(bus_nos, outcomes, strict=True)
            if isinstance(out, EbillError)
        ]
        await store.finish_batch(
            self._pool, unit_code=unit_code, batch_no=batch_no, failures=failures
        )

    async def batch(self, unit_code: str, batch_no: str) -> list[BatchItem]:
        rec = await store.load_batch(self._pool, unit_code, batch_no)
        if rec is None:
            raise NotFound(f"batchNo: no batch {batch_no}", field="batchNo")
        # The sealed bills open with the issuance use case's key ring (mid-merge
        # of wt-pii: the gateway was written before bills were sealed).
        bills = await bill_store.bills_by_id(
            self._pool,
            list(rec.issued.values()),
            self._issuance._ring,
        )
        by_serial = {b.bus_no: b for b in bills}
        items = []
        for bus_no in rec.bus_nos:
            bill = by_serial.get(bus_no)
            if bill is not None:
                items.append(BatchItem(bus_no, BatchState.GENERATED, bill))
            elif bus_no in rec.failures:
                code, message = rec.failures[bus_no]
                items.append(BatchItem(bus_no, BatchState.FAILED, error_code=code, error=message))
            else:
                items.append(BatchItem(bus_no, BatchState.NOT_GENERATED))
        return items

    async def day_totals(
        self,
        *,
        unit_code: str,
        day: date,
        red: bool,
        place_code: str = "",
        bus_type: str = "",
        by_issue: bool = False,
    ) -> DayTotals:
        """One day's bills cut into runs: a business day (the HIS's busDateTime)
        or, ``by_issue``, an issue day (China time)."""
        bills = await store.day_bills(
            self._pool,
            unit_code=unit_code,
            day=day,
            red=red,
            place_code=place_code,
            bus_type=bus_type,
            by_issue=by_issue,
        )
        cut = runs(bills)
        return DayTotals(
            day=day,
            count=len(bills),
            total_fen=sum(abs(b.total_fen) for b in bills),
            runs=tuple(cut),
        )

    async def bill_page(self, q: PageQuery) -> tuple[int, list[IssuedBill]]:
        """One page of a unit's bills by business or issue time (the vendor's
        listings), and how many there are in all. Ranges longer than
        MAX_LIST_DAYS are refused: a listing is a day's or a week's work."""
        if q.end < q.start:
            raise InvalidArgument("busEndDate: before busBgnDate", field="busEndDate")
        if q.end - q.start > timedelta(days=MAX_LIST_DAYS):
            raise InvalidArgument(
                f"busEndDate: at most {MAX_LIST_DAYS} days after busBgnDate", field="busEndDate"
            )
        return await store.bill_page(self._pool, q, self._issuance._ring)

    async def bill_on_paper(self, unit_code: str, paper_code: str, paper_no: str) -> BillKey:
        """The e-bill printed on a paper number of the unit."""
        key = await store.bill_on_paper(self._pool, unit_code, paper_code, paper_no)
        if key is None:
            raise NotFound(
                f"pBillNo: no bill printed on paper {paper_code}/{paper_no}", field="pBillNo"
            )
        return key

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
