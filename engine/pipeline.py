"""What flows between pipeline stages, and the pure steps of each stage.

A batch is a list of per-item outcomes in caller order. An item is either a
:class:`Work` (a bill moving through the stages), a :class:`Duplicate` (the same
bus_no appeared earlier in the batch) or an :class:`EbillError` (it stopped).
Each stage acts on what a Work still lacks, so a bill resumed after a crash or
retried by the HIS goes through the same code as a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.canonical import countersign_message
from engine.errors import EbillError
from engine.model import BillRecord, BillStatus, IssuedBill, compact_pickle, record_values
from engine.qr import facts_of_canonical
from engine.sm2 import VerifyingKey
from engine.state import may_become

log = logging.getLogger(__name__)

__all__ = [
    "Duplicate",
    "Item",
    "Work",
    "check_platform_signatures",
    "finish",
    "map_work",
    "resolve_duplicates",
    "take_countersignature",
]


@compact_pickle
@dataclass(frozen=True, slots=True)
class Work(BillRecord):
    """A bill on its way through the stages: its stored fields and how the trip goes."""

    countersigned_at: str = ""
    # Set by a stage that could not do its part (signer or fiscal away).
    deferred: str = ""
    # The platform refused the bill, or its countersignature did not verify:
    # waiting will not help, the caller is told so.
    rejected: bool = False
    # The platform itself refused the bill (not a countersignature that failed our
    # check): a refused red bill no longer cancels its original (storage.archive.archive).
    platform_refused: bool = False

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

    @property
    def qr_message(self) -> bytes:
        """What the platform's QR signature covers (engine.qr)."""
        return facts_of_canonical(self.canonical).message

    def issued(self) -> IssuedBill:
        """The bill as the caller sees it at the end of the pipeline."""
        # IssuedBill's constructor starts with the BillRecord fields, in order.
        return IssuedBill(*record_values(self))


@compact_pickle
@dataclass(frozen=True, slots=True)
class Duplicate:
    """This item repeats the bus_no of item ``of`` in the same batch."""

    of: int


Item = Work | Duplicate | EbillError


def map_work(items: Sequence[Item], fn: Callable[[Work], Item]) -> list[Item]:
    return [fn(it) if isinstance(it, Work) else it for it in items]


def finish(work: Work) -> Work:
    """The status a bill ends its trip through the pipeline in: as far as its
    signatures take it, where the state machine (engine.state) allows."""
    if work.fiscal_signature:
        target = BillStatus.ISSUED
    elif work.unit_signature:
        target = BillStatus.PENDING_COUNTERSIGN
    else:
        return work
    if target is work.status or not may_become(work.status, target):
        return work
    return replace(work, status=target)


def take_countersignature(
    w: Work,
    *,
    unit_signature: bytes,
    fiscal_signature: bytes,
    countersigned_at: str,
    unit_key: VerifyingKey | None,
    qr_signature: bytes = b"",
) -> Work:
    """The platform's countersignature on ``w``, with the unit signature it covers.

    On a repeat the platform answers with the unit signature it stored the first
    time (SM2 signatures are randomised), which then replaces ours; it is taken
    only if it verifies under the unit's key over the bill's canonical bytes, so
    the platform cannot put words in the unit's mouth. ``unit_key`` None: the key
    is unavailable and a different signature cannot be checked now.
    """
    if unit_signature and unit_signature != w.unit_signature:
        if unit_key is None:
            return replace(w, deferred="unit key unavailable to check the platform's answer")
        if not unit_key.verify(w.canonical, unit_signature):
            return replace(
                w,
                deferred="fiscal platform returned a unit signature that does not verify "
                "under the unit's key",
                rejected=True,
            )
    return replace(
        w,
        unit_signature=unit_signature or w.unit_signature,
        fiscal_signature=fiscal_signature,
        countersigned_at=countersigned_at,
        qr_signature=qr_signature,
    )


def _qr_verifies(key: VerifyingKey, w: Work) -> bool:
    try:
        message = w.qr_message
    except (ValueError, KeyError, TypeError):
        return False
    return key.verify(message, w.qr_signature)


def check_platform_signatures(w: Work, key: VerifyingKey | None, unavailable: str) -> Work:
    """The archive stage's check of what the platform signed: the countersignature
    and the QR signature, each under the platform's key. A bill whose signatures
    do not verify is not issued (rejected: waiting will not help); without the
    key it waits (``unavailable`` says why)."""
    if not w.fiscal_signature or w.status is BillStatus.ISSUED:
        # Nothing new to check: verified when it was first archived.
        return w
    if key is None:
        return replace(w, fiscal_signature=b"", qr_signature=b"", deferred=unavailable)
    if not key.verify(w.countersign_message, w.fiscal_signature):
        log.error("bad fiscal countersignature on %s/%s", w.bill_code, w.bill_no)
        reason = "fiscal countersignature invalid"
    elif w.qr_signature and not _qr_verifies(key, w):
        # The platform's word on the QR facts is as binding as its countersignature:
        # a bill whose QR would not verify is not issued.
        log.error("bad fiscal QR signature on %s/%s", w.bill_code, w.bill_no)
        reason = "fiscal QR signature invalid"
    else:
        return w
    return replace(w, fiscal_signature=b"", qr_signature=b"", deferred=reason, rejected=True)


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
