"""Bill and paper numbers: one value type, printed as ten digits everywhere.

A number is an integer in the database (``bigint``), in arithmetic and in
ranges, and ten zero-padded digits on the wire, on paper and in messages.
:class:`BillNo` is an ``int`` that prints itself that way, so a number can go
straight into SQL parameters and f-strings alike, and the format lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidArgument

__all__ = ["DIGITS", "BillNo", "NumberRange"]

DIGITS = 10
_LIMIT = 10**DIGITS


class BillNo(int):
    """A bill (or paper) number in ``[0, 10**10)``; ``str()`` gives ten digits."""

    __slots__ = ()

    def __new__(cls, value: int) -> BillNo:
        if not 0 <= int(value) < _LIMIT:
            raise ValueError(f"bill number out of range: {value}")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, text: str, field: str = "bill_no") -> BillNo:
        """Exactly ten ASCII digits, or InvalidArgument naming ``field``."""
        if len(text) != DIGITS or not text.isascii() or not text.isdigit():
            raise InvalidArgument(f"must be {DIGITS} digits", field=field)
        return cls(int(text))

    def __str__(self) -> str:
        return f"{int(self):0{DIGITS}d}"

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else int(self).__format__(spec)

    def __repr__(self) -> str:
        return f"BillNo({str(self)!r})"

    def __reduce__(self) -> tuple[type[BillNo], tuple[int]]:
        return BillNo, (int(self),)


@dataclass(frozen=True, slots=True, order=True)
class NumberRange:
    """Numbers ``start..end``, both included."""

    start: BillNo
    end: BillNo

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", BillNo(self.start))
        object.__setattr__(self, "end", BillNo(self.end))
        if self.start > self.end:
            raise ValueError(f"range ends before it starts: {self.start}-{self.end}")

    @classmethod
    def of(cls, start: int, end: int) -> NumberRange:
        return cls(BillNo(start), BillNo(end))

    @classmethod
    def parse(cls, start: str, end: str, field: str = "range") -> NumberRange:
        lo = BillNo.parse(start, f"{field}.start_no")
        hi = BillNo.parse(end, f"{field}.end_no")
        if lo > hi:
            raise InvalidArgument("start_no is after end_no", field=field)
        return cls(lo, hi)

    @property
    def count(self) -> int:
        return int(self.end) - int(self.start) + 1

    def __contains__(self, no: object) -> bool:
        return isinstance(no, int) and self.start <= no <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"
