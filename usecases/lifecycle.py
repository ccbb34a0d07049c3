"""A bill's life after issuance: red-flush, refund, back entry, listing.

Each use case asks the pure rules in engine.lifecycle for a clear refusal before
any work; the transaction that writes checks the same rules again under row
locks, so two windows racing on one bill cannot both succeed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import asyncpg

from actors.pipeline import Pipeline
from config.tuning import LIST_DEFAULT_PAGE, LIST_MAX_PAGE, RED_MAX_BATCH, RED_MAX_INFLIGHT
from engine.errors import (
    AlreadyExists,
    DeadlineExceeded,
    EbillError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from engine.fields import prefixed
from engine.lifecycle import (
    BillKey,
    BillState,
    check_own,
    check_red_flush,
    check_refund,
    red_prepared,
)
from engine.masking import masked_bill, payer_only
from engine.model import CST, BillStatus, IssuedBill
from engine.money import format_fen
from engine.operator import Operator
from engine.pipeline import Work
from engine.prepare import Prepared
from engine.sealing import KeyRing
from storage import bills as bill_store
from storage import lifecycle as store
from usecases.batcher import MicroBatcher
from usecases.issuance import final

__all__ = [
    "BackEntry",
    "BillQuery",
    "Lifecycle",
    "Page",
    "RedFlush",
    "RedFlushed",
    "Refund",
    "Refunded",
]


@dataclass(frozen=True, slots=True)
class RedFlush:
    """Cancel ``original`` with a red bill whose serial is ``bus_no`` (红冲)."""

    original: BillKey
    bus_no: str
    reason: str
    void_paper: bool = False


@dataclass(frozen=True, slots=True)
class RedFlushed:
    red_bill: IssuedBill
    original: IssuedBill  # as it is now


@dataclass(frozen=True, slots=True)
class Refund:
    """A partial refund: the original red-flushed and, if anything is left, a
    remainder bill issued in one step (退费重开)."""

    original: BillKey
    red_bus_no: str
    refund_fen: int
    reason: str
    remainder: bytes | None = None  # serialised BillRequest
    void_paper: bool = False


@dataclass(frozen=True, slots=True)
class Refunded:
    red_bill: IssuedBill
    remainder: IssuedBill | None
    original: IssuedBill


@dataclass(frozen=True, slots=True)
class BackEntry:
    """A bill issued elsewhere (the fiscal platform's own portal), recorded here (补录)."""

    bill: bytes  # serialised BillRequest
    bill_code: str
    bill_no: str
    check_code: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class BillQuery:
    """An issuing point's search (or the bill office's over the whole unit);
    empty members do not filter."""

    payer_id_card_no: str = ""
    payer_tel: str = ""
    payer_card_no: str = ""
    from_date: date | None = None
    to_date: date | None = None
    bill_kind: str = ""
    paper_status: str = ""  # none / printed / voided
    red: str = ""  # normal / red_flushed / red_bill
    payer_name: str = ""
    bus_no: str = ""  # the HIS's serial
    bill_code: str = ""
    bill_no: str = ""
    status: str = ""  # a BillStatus value
    page_size: int = 0  # 0: LIST_DEFAULT_PAGE
    after_id: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    # Without canonical bytes and signatures; the request holds only the payer.
    bills: list[IssuedBill]
    next_after_id: int  # 0 on the last page


class Lifecycle:
    def __init__(
        self,
        pool: asyncpg.Pool,
        pipeline: Pipeline,
        timeout_s: float,
        linger_s: float = 0.003,
        max_queue: int | None = None,
        *,
        ring: KeyRing,
    ) -> None:
        """``max_queue``: red bills waiting for a pipeline batch (EBILL_QUEUE_MAX, as
        for issuance); past it a red-flush is refused at once with RESOURCE_EXHAUSTED
        and a retry delay instead of queueing without bound. None: no bound.
        ``ring`` opens the sealed payer data of stored bills."""
        self._pool = pool
        self._ring = ring
        self._pipeline = pipeline
        self._timeout = timeout_s
        # Red-flushes from many windows share pipeline batches, like issuance.
        self._reds: MicroBatcher[Prepared] = MicroBatcher(
            self._pipeline.issue_prepared,
            max_batch=RED_MAX_BATCH,
            linger_s=linger_s,
            max_inflight=RED_MAX_INFLIGHT,
            max_queue=max_queue,
            metered=False,
        )

    def start(self) -> None:
        self._reds.start()

    async def stop(self) -> None:
        await self._reds.stop()

    # -- red-flush and refund -----------------------------------------------

    async def red_flush(
        self, op: Operator, cmd: RedFlush, *, timeout_s: float | None = None
    ) -> RedFlushed:
        """``timeout_s``: the caller's time left; the pipeline is waited for the
        shorter of it and EBILL_RPC_TIMEOUT_S (likewise for refund)."""
        original = await self._original(cmd.original, op, "original")
        red = await self._replay(op.unit_code, cmd.bus_no, original.state)
        if red is not None:
            # The serial's red bill came with a refund that kept part of the bill:
            # answering it as a red-flush would tell the caller the whole was given back.
            kept = await bill_store.remainder_of(self._pool, original.state.bill_id, self._ring)
            if kept is not None:
                raise AlreadyExists(
                    f"bus_no: {cmd.bus_no} is the serial of a refund of part of "
                    f"{original.state.label} (the rest is bill {kept.bill_code}/{kept.bill_no}); "
                    "refund or red-flush that bill instead",
                    field="bus_no",
                )
            (now,) = await bill_store.bills_by_id(self._pool, [original.state.bill_id], self._ring)
            return RedFlushed(red, now)
        err = check_red_flush(original.state, void_paper=cmd.void_paper)
        if err is not None:
            raise err
        prepared = red_prepared(
            original.state,
            original.canonical,
            original.request,
            bill_code=await self._red_bill_code(original.state),
            bus_no=cmd.bus_no,
            bus_time=datetime.now(UTC).astimezone(CST),
            place_code=op.place_code,
            operator=op.person,
            reason=cmd.reason,
            void_paper=cmd.void_paper,
            op="red_flush",
        )
        (work,) = await self._issue([prepared], atomic=False, timeout_s=timeout_s)
        red, now = await bill_store.bills_by_id(
            self._pool, [work.bill_id, original.state.bill_id], self._ring
        )
        return RedFlushed(replace(red, replayed=work.replayed), now)

    async def refund(
        self, op: Operator, cmd: Refund, *, timeout_s: float | None = None
    ) -> Refunded:
        original = await self._original(cmd.original, op, "original")
        state = original.state
        red = await self._replay(op.unit_code, cmd.red_bus_no, state)
        if red is not None:
            remainder = await bill_store.remainder_of(self._pool, state.bill_id, self._ring)
            # A retry carries the same amount; another amount under this serial is
            # another operation, never answered with the first one's bills.
            kept = state.total_fen - cmd.refund_fen
            if (remainder.total_fen if remainder is not None else 0) != kept:
                raise AlreadyExists(
                    f"red_bus_no: {cmd.red_bus_no} is the serial of a refund of {state.label} "
                    f"that kept {format_fen(remainder.total_fen if remainder else 0)}, "
                    f"not {format_fen(max(kept, 0))}",
                    field="red_bus_no",
                )
            (now,) = await bill_store.bills_by_id(self._pool, [state.bill_id], self._ring)
            return Refunded(red, remainder, now)
        rem = None if cmd.remainder is None else await self._remainder(op, state, cmd.remainder)
        check_refund(state, cmd.refund_fen, rem.total_fen if rem else None)
        err = check_red_flush(state, void_paper=cmd.void_paper)
        if err is not None:
            raise err
        red_p = red_prepared(
            state,
            original.canonical,
            original.request,
            bill_code=await self._red_bill_code(state),
            bus_no=cmd.red_bus_no,
            bus_time=datetime.now(UTC).astimezone(CST),
            place_code=op.place_code,
            operator=op.person,
            reason=cmd.reason,
            void_paper=cmd.void_paper,
            op="refund",
        )
        works = await self._issue(
            [red_p] if rem is None else [red_p, rem], atomic=True, timeout_s=timeout_s
        )
        *made, now = await bill_store.bills_by_id(
            self._pool, [w.bill_id for w in works] + [state.bill_id], self._ring
        )
        return Refunded(made[0], made[1] if len(made) > 1 else None, now)

    async def _remainder(self, op: Operator, state: BillState, raw: bytes) -> Prepared:
        """The refund's remainder bill, checked like any bill and against the original."""
        (checked,) = await self._pipeline.validate([raw])
        if isinstance(checked, EbillError):
            raise prefixed(checked, "remainder")
        assert isinstance(checked, Prepared)
        if checked.unit_code != op.unit_code or checked.place_code != op.place_code:
            raise InvalidArgument(
                f"remainder.place_code: the remainder is issued at the operator's issuing "
                f"point {op.place_code}",
                field="remainder.place_code",
            )
        if checked.bus_type != state.bus_type:
            raise InvalidArgument(
                f"remainder.bus_type: must be the original's {state.bus_type}",
                field="remainder.bus_type",
            )
        taken = await bill_store.get_bill(
            self._pool, BillKey.serial(op.unit_code, checked.bus_no), self._ring
        )
        if taken is not None:
            # The serial is the idempotency key: reusing one would answer with
            # that other bill instead of issuing the remainder.
            raise AlreadyExists(
                f"remainder.bus_no: {checked.bus_no} is already the serial of bill "
                f"{taken.bill_code}/{taken.bill_no}",
                field="remainder.bus_no",
            )
        return replace(checked, replaces=state.bill_id, op="refund", operator=op.person)

    # -- back entry and listing -----------------------------------------------

    async def back_entry(self, op: Operator, cmd: BackEntry) -> IssuedBill:
        (checked,) = await self._pipeline.validate([cmd.bill])
        if isinstance(checked, EbillError):
            raise prefixed(checked, "bill")
        assert isinstance(checked, Prepared)
        if checked.unit_code != op.unit_code or checked.place_code != op.place_code:
            raise InvalidArgument(
                "bill.place_code: a back entry is recorded at the operator's issuing point "
                f"{op.place_code}",
                field="bill.place_code",
            )
        return await store.back_entry(
            self._pool,
            checked,
            bill_code=cmd.bill_code,
            bill_no=cmd.bill_no,
            check_code=cmd.check_code,
            issued_at=cmd.issued_at,
            operator=op.person,
            ring=self._ring,
        )

    async def list_bills(
        self, op: Operator, q: BillQuery, *, reveal_pii: bool = False, office: bool = False
    ) -> Page:
        """An issuing point's bills, each with its payer (masked unless
        ``reveal_pii``: the caller may read personal data). Payer ID card, phone,
        card and name are found by exact match on their keyed digests. With
        ``office`` (the caller's scope is the bill office) an empty
        ``op.place_code`` searches every issuing point of the unit."""
        size = q.page_size or LIST_DEFAULT_PAGE
        if not 1 <= size <= LIST_MAX_PAGE:
            raise InvalidArgument(f"page_size: 1 to {LIST_MAX_PAGE}", field="page_size")
        if not op.place_code and not office:
            raise InvalidArgument("place_code: an issuing point", field="operator.place_code")
        if q.status and q.status not in set(BillStatus):
            raise InvalidArgument(f"status: no status {q.status!r}", field="status")
        bills, next_id = await store.list_bills(
            self._pool,
            store.BillFilter(
                unit_code=op.unit_code,
                place_code=op.place_code,
                payer_id_card_no=q.payer_id_card_no,
                payer_tel=q.payer_tel,
                payer_card_no=q.payer_card_no,
                from_date=q.from_date,
                to_date=q.to_date,
                bill_kind=q.bill_kind,
                paper_status=q.paper_status,
                red=q.red,
                payer_name=q.payer_name,
                bus_no=q.bus_no,
                bill_code=q.bill_code,
                bill_no=q.bill_no,
                status=q.status,
                limit=size,
                after_id=q.after_id,
            ),
            self._ring,
        )
        # A list answers who paid what; signatures and documents are one GetBill away.
        lean = [payer_only(b if reveal_pii else masked_bill(b)) for b in bills]
        return Page(lean, next_id or 0)

    # -- helpers ------------------------------------------------------------

    async def _original(self, key: BillKey, op: Operator, field: str) -> store.Original:
        original = await store.load_original(self._pool, key, self._ring)
        if original is None:
            raise NotFound(f"no {key.describe()}", field=field)
        check_own(original.state, op.unit_code, op.place_code)
        return original

    async def _issue(
        self, prepared: list[Prepared], *, atomic: bool, timeout_s: float | None
    ) -> list[Work]:
        """Through the pipeline from reserve on. Atomic groups (a refund) travel
        alone; single red bills are batched with others."""
        run = (
            self._pipeline.issue_prepared(prepared, atomic=True)
            if atomic
            else self._reds.submit(prepared)
        )
        wait = self._timeout if timeout_s is None else min(self._timeout, timeout_s)
        try:
            outcomes = await asyncio.wait_for(run, wait)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no answer from the pipeline within {wait:g}s; send the same request "
                "(same bus_no) again to get the outcome"
            ) from None
        works: list[Work] = []
        for out in outcomes:
            err = final(out)
            if err is not None:
                raise err
            assert isinstance(out, Work)
            works.append(out)
        return works

    async def _replay(self, unit_code: str, bus_no: str, state: BillState) -> IssuedBill | None:
        """The red bill of an earlier call with this bus_no, or None if the serial is new."""
        existing = await bill_store.get_bill(
            self._pool, BillKey.serial(unit_code, bus_no), self._ring
        )
        if existing is None:
            return None
        if existing.red_of != f"{state.bill_code}/{state.bill_no}":
            raise AlreadyExists(
                f"bus_no: {bus_no} is already the serial of bill "
                f"{existing.bill_code}/{existing.bill_no}",
                field="bus_no",
            )
        if existing.status is BillStatus.REJECTED:
            # The platform refused that red bill and the original is issued again;
            # answering with it would pass a bill that cancels nothing as issued.
            # Its serial stays spent (numbers and serials are never reused).
            raise FailedPrecondition(
                f"bus_no: {bus_no} is the serial of red bill "
                f"{existing.bill_code}/{existing.bill_no}, which the fiscal platform "
                f"refused; {state.label} is issued again: red-flush it under a new bus_no",
                field="bus_no",
            )
        return replace(existing, replayed=True)

    async def _red_bill_code(self, state: BillState) -> str:
        if state.origin == "engine":
            return state.bill_code
        # A bill issued elsewhere (back entry) or by the previous system (history,
        # maybe on a bill code no longer in use) is cancelled on this unit's bill
        # code for its kind.
        code = await store.bill_code_for(self._pool, state.unit_code, state.bus_type)
        if code is None:
            raise NotFound(
                f"unit {state.unit_code} has no bill code for business type {state.bus_type}"
            )
        return code
