"""The catalogue (reference data) in PostgreSQL: what validation checks bills
against (load), its maintenance with change records (edit), the one-call set-up
of the demo hospital and segments (reference), and the unit's certificates."""

from storage.catalog.load import load_catalog, load_units, unit_versions
from storage.catalog.reference import (
    PAY_CHANNELS,
    add_segment,
    ensure_unit,
    stock_available,
    stock_summary,
)

__all__ = [
    "PAY_CHANNELS",
    "add_segment",
    "ensure_unit",
    "load_catalog",
    "load_units",
    "stock_available",
    "stock_summary",
    "unit_versions",
]
