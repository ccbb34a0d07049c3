"""Leasing numbers from segments (pure)."""

from __future__ import annotations

import pytest

from engine.numbers import BillNo
from engine.stock import Lease, SegmentCursor, plan_lease


def test_lease_spans_segments_in_order_and_stops_when_dry() -> None:
    segs = [SegmentCursor(1, 10, 12), SegmentCursor(2, 100, 199)]
    assert plan_lease(segs, 2) == [Lease(1, 10, 2)]
    assert plan_lease(segs, 5) == [Lease(1, 10, 3), Lease(2, 100, 2)]
    assert sum(lease.count for lease in plan_lease(segs, 1000)) == 103
    assert plan_lease([SegmentCursor(1, 13, 12)], 1) == []
    assert plan_lease(segs, 0) == []


def test_bill_numbers_are_ten_digits() -> None:
    assert str(BillNo(10535766)) == "0010535766"
    with pytest.raises(ValueError):
        BillNo(10**10)
