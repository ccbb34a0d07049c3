"""The bill state machine: which status may follow which."""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import FailedPrecondition
from engine.model import BillStatus

__all__ = ["TRANSITIONS", "check_transition"]

TRANSITIONS: Mapping[BillStatus, frozenset[BillStatus]] = {
    # A reserved row carries everything needed to sign it again after a crash.
    BillStatus.RESERVED: frozenset({BillStatus.PENDING_COUNTERSIGN, BillStatus.ISSUED}),
    # Unit-signed while the fiscal platform was away; countersigned later.
    BillStatus.PENDING_COUNTERSIGN: frozenset({BillStatus.ISSUED}),
    BillStatus.ISSUED: frozenset({BillStatus.RED_FLUSHED}),
    BillStatus.RED_FLUSHED: frozenset(),
}


def check_transition(current: BillStatus, new: BillStatus) -> None:
    """Raise FailedPrecondition unless ``current -> new`` is allowed."""
    if new not in TRANSITIONS[current]:
        raise FailedPrecondition(f"a bill in status {current.value} cannot become {new.value}")
