"""The bill state machine: which status may follow which.

The pure core asks it wherever a bill's status moves: engine.pipeline.finish
(reserved -> pending_countersign -> issued) and engine.lifecycle.check_red_flush
(issued -> red_flushed). Storage's SQL guards (``status IN (...)``) say the same
for rows written concurrently.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.model import BillStatus

__all__ = ["TRANSITIONS", "may_become"]

TRANSITIONS: Mapping[BillStatus, frozenset[BillStatus]] = {
    # A reserved row carries everything needed to sign it again after a crash.
    BillStatus.RESERVED: frozenset({BillStatus.PENDING_COUNTERSIGN, BillStatus.ISSUED}),
    # Unit-signed while the fiscal platform was away; countersigned later.
    # Or refused by the platform for good (a red bill: storage.archive.archive
    # restores its original to issued in the same transaction).
    BillStatus.PENDING_COUNTERSIGN: frozenset({BillStatus.ISSUED, BillStatus.REJECTED}),
    BillStatus.ISSUED: frozenset({BillStatus.RED_FLUSHED}),
    BillStatus.RED_FLUSHED: frozenset(),
    BillStatus.REJECTED: frozenset(),
}


def may_become(current: BillStatus, new: BillStatus) -> bool:
    """Whether a bill in ``current`` may move to ``new`` (staying put is no move)."""
    return new in TRANSITIONS[current]
