"""What flows between pipeline stages, and the pure steps of each stage.

A batch is a list of per-item outcomes in caller order. An item is either a
:class:`Work` (a bill moving through the stages), a :class:`Duplicate` (the same
bus_no appeared earlier in the batch) or an :class:`EbillError` (it stopped).
Each stage acts on what a Work still lacks, so a bill resumed after a crash or
retried by the HIS goes through the same code as a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from engine.canonical import countersign_message
from engine.errors import EbillError
from engine.model import BillStatus, IssuedBill, compact_pickle

__all__ = ["Duplicate", "Item", "Work", "finish", "map_work", "resolve_duplicates"]


@compact_pickle
@dataclass(frozen=True, slots=True)
class Work:
    bill_id: int
    unit_code: str
    bus_no: str
    bus_type: str
    place_code: str
    bill_code: str
    bill_no: str
    check_code: str
    total_fen: int
    issued_at: datetime
    canonical: bytes
    canonical_version: str
    status: BillStatus
    unit_signature: bytes = b""
    fiscal_signature: bytes = b""
    countersigned_at: str = ""
    replayed: bool = False
    # Set by a stage that could not do its part (signer or fiscal away).
    deferred: str = ""
    # The platform refused the bill, or its countersignature did not verify:
    # waiting will not help, the caller is told so.
    rejected: bool = False
    bill_kind: str = ""

    @property
    def needs_unit_signature(self) -> bool:
        return self.status is BillStatus.RESERVED and not self.unit_signature

    @property
    def needs_countersign(self) -> bool:
        return (
            self.status in (BillStatus.RESERVED, BillStatus.PENDING_COUNTERSIGN)
            and bool(self.unit_signature)
            and not self.fiscal_signature
        )

    @property
    def countersign_message(self) -> bytes:
        return countersign_message(self.canonical, self.unit_signature)

    def issued(self) -> IssuedBill:
        """The bill as the caller sees it at the end of the pipeline."""
        return IssuedBill(
            unit_code=self.unit_code,
            bus_no=self.bus_no,
            bus_type=self.bus_type,
            place_code=self.place_code,
            bill_code=self.bill_code,
            bill_no=self.bill_no,
            check_code=self.check_code,
            status=self.status,
            total_fen=self.total_fen,
            issued_at=self.issued_at,
            canonical=self.canonical,
            canonical_version=self.canonical_version,
            unit_signature=self.unit_signature,
            fiscal_signature=self.fiscal_signature,
            replayed=self.replayed,
            bill_kind=self.bill_kind,
        )


@compact_pickle
@dataclass(frozen=True, slots=True)
class Duplicate:
    """This item repeats the bus_no of item ``of`` in the same batch."""

    of: int


Item = Work | Duplicate | EbillError


def map_work(items: Sequence[Item], fn: Callable[[Work], Item]) -> list[Item]:
    return [fn(it) if isinstance(it, Work) else it for it in items]


def finish(work: Work) -> Work:
    """The status a bill ends its trip through the pipeline in."""
    if work.status in (BillStatus.ISSUED, BillStatus.RED_FLUSHED):
        return work
    if work.fiscal_signature:
        return replace(work, status=BillStatus.ISSUED)
    if work.unit_signature:
        return replace(work, status=BillStatus.PENDING_COUNTERSIGN)
    return work


def resolve_duplicates(items: Sequence[Item]) -> list[Work | EbillError]:
    """Give each Duplicate the final outcome of the item it repeats."""
    out: list[Work | EbillError] = []
    for it in items:
        if isinstance(it, Duplicate):
            first = items[it.of]
            assert not isinstance(first, Duplicate)
            out.append(replace(first, replayed=True) if isinstance(first, Work) else first)
        else:
            out.append(it)
    return out
