"""Transitional: the names servicers took from here before issue #10's layout.

The request readers are in wire.requests, ``observed`` in ebill.interceptors.
StockService still imports them from here; once it imports them from their
homes (and drops ``observed`` for the interceptors), delete this module.
"""

from __future__ import annotations

from ebill.interceptors import observed
from wire.requests import (
    bill_key,
    code8,
    day,
    digits,
    number_range,
    operator_any,
    operator_office,
    operator_point,
    prefixed,
    stamp,
)

__all__ = [
    "bill_key",
    "code8",
    "day",
    "digits",
    "number_range",
    "observed",
    "operator_any",
    "operator_office",
    "operator_point",
    "prefixed",
    "stamp",
]
