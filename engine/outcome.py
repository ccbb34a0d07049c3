"""What a bill's trip through the pipeline means to its caller. Pure.

A :class:`Work` that comes out of the pipeline unfinished is either an answer
(unit-signed, the countersignature follows: pending) or an error the caller must
see; this mapping is the same for every edge that issues bills.
"""

from __future__ import annotations

from engine.errors import EbillError, FailedPrecondition, Unavailable
from engine.model import BillStatus
from engine.pipeline import Work

__all__ = ["outcome_error"]


def outcome_error(w: Work) -> EbillError | None:
    """The error an unfinished bill reports to its caller, if any."""
    if w.status is BillStatus.RESERVED:
        return Unavailable(
            f"{w.deferred or 'not signed'}: bill {w.bill_code}/{w.bill_no} is held for bus_no "
            f"{w.bus_no}; send the same request again to complete it"
        )
    if w.rejected:
        return FailedPrecondition(w.deferred)
    return None
