"""Number arithmetic of stock: leasing numbers from segments, runs of numbers.

Numbers print through engine.numbers.BillNo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Lease", "SegmentCursor", "compress_ranges", "plan_lease"]


@dataclass(frozen=True, slots=True)
class SegmentCursor:
    """Where a segment stands: its next unused number and its last number."""

    segment_id: int
    next_no: int
    end_no: int

    @property
    def remaining(self) -> int:
        return max(0, self.end_no - self.next_no + 1)


@dataclass(frozen=True, slots=True)
class Lease:
    """Numbers [first_no, first_no + count) taken from one segment."""

    segment_id: int
    first_no: int
    count: int

    @property
    def new_next_no(self) -> int:
        return self.first_no + self.count


def plan_lease(segments: Sequence[SegmentCursor], wanted: int) -> list[Lease]:
    """Take up to ``wanted`` numbers from segments in order, lowest first.

    Returns fewer than wanted when stock runs out; the caller decides which items
    go without. Numbers come out contiguous within each segment, so a batch of
    bills gets consecutive numbers whenever one segment can hold it.
    """
    leases: list[Lease] = []
    left = wanted
    for seg in segments:
        if left == 0:
            break
        take = min(left, seg.remaining)
        if take:
            leases.append(Lease(seg.segment_id, seg.next_no, take))
            left -= take
    return leases


def compress_ranges(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted numbers as inclusive runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        elif not out or n > out[-1][1]:
            out.append((n, n))
    return out
