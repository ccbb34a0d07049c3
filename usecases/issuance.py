"""Issuing e-bills and reading them back: one or many through the shared batches,
a bill and its status, the backlog, and offline paper bills recorded for later.

Domain values in and out; the servicers (gRPC now, HTTP next) only translate.
A request travels as the serialised BillRequest the validate stage reads, so the
bytes a caller sent are the bytes archived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from actors.pipeline import Pipeline
from config.tuning import MAX_BATCH
from engine.errors import DeadlineExceeded, EbillError, InvalidArgument, NotFound
from engine.fields import prefixed
from engine.lifecycle import BillKey
from engine.masking import masked_bill
from engine.model import IssuedBill
from engine.outcome import outcome_error
from engine.pipeline import Work
from engine.sealing import KeyRing
from ops import metrics
from storage import archive as archive_store
from storage import bills as bill_store
from storage.offline import (
    QuarantinedOffline,
    quarantined_count,
    quarantined_offline,
    record_offline,
)
from usecases.batcher import Lanes, Outcome

__all__ = ["Backlog", "Issuance", "OfflineBill", "final"]


def final(outcome: Outcome) -> EbillError | None:
    """The error a caller gets for one pipeline outcome, or None if the bill is done."""
    if isinstance(outcome, EbillError):
        return outcome
    return outcome_error(outcome)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What is unfinished, for operators and load balancers."""

    reserved: int
    pending_countersign: int
    oldest_unfinished_s: float
    max_attempts: int
    fiscal_circuit_open: bool
    # Offline bills recovery set aside for an operator: how many, the oldest 100.
    quarantined: int = 0
    quarantine: tuple[QuarantinedOffline, ...] = ()


@dataclass(frozen=True, slots=True)
class OfflineBill:
    """A paper bill handed out while the engine or the platform was away (线下开票)."""

    request: bytes  # the serialised BillRequest, issued later as is
    paper_code: str
    paper_no: str
    operator: str


class Issuance:
    def __init__(
        self,
        batcher: Lanes[bytes],
        pool: asyncpg.Pool,
        pipeline: Pipeline,
        timeout_s: float,
        *,
        ring: KeyRing,
    ) -> None:
        self._batcher = batcher
        self._pool = pool
        # Opens the sealed payer data of stored bills (docs/personal-data.md).
        self._ring = ring
        self._pipeline = pipeline
        self._timeout = timeout_s

    async def _issue(
        self, raws: list[bytes], timeout_s: float | None, *, interactive: bool
    ) -> list[Outcome]:
        wait = self._timeout if timeout_s is None else min(self._timeout, timeout_s)
        if wait <= 0:  # the caller has given up already: queue nothing for nobody
            raise DeadlineExceeded("the call's deadline passed before it was queued")
        try:
            return await asyncio.wait_for(self._batcher.submit(raws, interactive=interactive), wait)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no answer from the pipeline within {wait:g}s; the bills may still be "
                "issued: send the same request (same bus_no) again to get them"
            ) from None

    async def issue_one(self, raw: bytes, *, timeout_s: float | None = None) -> Work:
        """Issue one bill; its refusal is raised with fields under ``bill``.
        ``timeout_s``: the caller's time left (the wait is the shorter of it and
        EBILL_RPC_TIMEOUT_S)."""
        # A bill issued one at a time has someone waiting for it at a window.
        (outcome,) = await self._issue([raw], timeout_s, interactive=True)
        err = final(outcome)
        _count(outcome, err)
        if err is not None:
            raise prefixed(err, "bill")
        assert isinstance(outcome, Work)
        return outcome

    async def issue_batch(
        self, raws: Sequence[bytes], *, timeout_s: float | None = None
    ) -> list[Work | EbillError]:
        """Issue many; one outcome per bill, in order, each refusal with fields
        under ``bills[i]``. A refused bill does not stop the others."""
        if not raws:
            raise InvalidArgument("bills: at least one bill is required", field="bills")
        if len(raws) > MAX_BATCH:
            raise InvalidArgument(
                f"bills: at most {MAX_BATCH} bills per call, got {len(raws)}", field="bills"
            )
        outcomes = await self._issue(list(raws), timeout_s, interactive=False)
        results: list[Work | EbillError] = []
        for i, outcome in enumerate(outcomes):
            err = final(outcome)
            _count(outcome, err)
            if err is not None:
                results.append(prefixed(err, f"bills[{i}]"))
            else:
                assert isinstance(outcome, Work)
                results.append(outcome)
        return results

    async def get_bill(self, key: BillKey, *, reveal_pii: bool = True) -> IssuedBill:
        """A bill with its request and canonical bytes. Without ``reveal_pii`` (the
        caller may not read personal data) the payer is masked and the canonical
        bytes, which name the payer in full, are left out."""
        bill = await bill_store.get_bill(self._pool, key, self._ring)
        if bill is None:
            raise NotFound(f"no {key.describe()}")
        return bill if reveal_pii else masked_bill(bill)

    async def backlog(self) -> Backlog:
        b = await archive_store.backlog(self._pool)
        return Backlog(
            reserved=int(b["reserved"]),
            pending_countersign=int(b["pending_countersign"]),
            oldest_unfinished_s=b["oldest_s"],
            max_attempts=int(b["max_attempts"]),
            fiscal_circuit_open=await self._pipeline.fiscal_circuit_open(),
            quarantined=await quarantined_count(self._pool),
            quarantine=tuple(await quarantined_offline(self._pool)),
        )

    async def record_offline(self, bill: OfflineBill) -> int:
        """Check the bill as issuance would and record it; no number is taken.
        Returns the offline record's id."""
        (checked,) = await self._pipeline.validate([bill.request])
        if isinstance(checked, EbillError):
            raise prefixed(checked, "bill")
        return await record_offline(
            self._pool,
            unit_code=checked.unit_code,
            bus_no=checked.bus_no,
            place_code=checked.place_code,
            paper_code=bill.paper_code,
            paper_no=bill.paper_no,
            operator=bill.operator,
            request=bill.request,
            ring=self._ring,
        )


def _count(outcome: Outcome, err: EbillError | None) -> None:
    if err is not None:
        metrics.BILLS.labels(err.code).inc()
    elif not isinstance(outcome, EbillError):
        metrics.BILLS.labels(outcome.status.value).inc()
