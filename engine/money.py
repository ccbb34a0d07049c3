"""Money and quantities as exact values: integer fen, Decimal quantities.

Input amounts arrive as decimal strings in yuan. Floats never appear: a value with
more fraction digits than allowed is rejected rather than rounded, because a
rounded amount on a fiscal bill is a wrong amount.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["format_fen", "format_quantity", "parse_fen", "parse_quantity"]

_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,13})(?:\.([0-9]{1,2}))?$")
_QUANTITY = re.compile(r"^(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,4}))?$")


def parse_fen(text: str) -> int:
    """Parse a non-negative yuan amount with at most 2 fraction digits into fen.

    Raises ValueError with a message meant for the caller.
    """
    m = _AMOUNT.match(text.strip())
    if m is None:
        raise ValueError(
            f"must be a non-negative decimal amount with at most 2 fraction digits, got {text!r}"
        )
    whole, frac = m.group(1), (m.group(2) or "")
    return int(whole) * 100 + int(frac.ljust(2, "0"))


def format_fen(fen: int) -> str:
    """Format fen as a yuan string with exactly 2 fraction digits ("-0.50" for -50)."""
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q}.{r:02d}"


def parse_quantity(text: str) -> Decimal:
    """Parse a non-negative quantity or unit price with at most 4 fraction digits."""
    m = _QUANTITY.match(text.strip())
    if m is None:
        raise ValueError(
            f"must be a non-negative decimal with at most 4 fraction digits, got {text!r}"
        )
    return Decimal(text.strip())


def format_quantity(value: Decimal) -> str:
    """Canonical text of a quantity: exactly 4 fraction digits."""
    return f"{value.quantize(Decimal('0.0001')):f}"
