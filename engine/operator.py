"""Who makes a call: a unit's bill office, or one of its issuing points."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Operator"]


@dataclass(frozen=True, slots=True)
class Operator:
    """A person acting for ``unit_code``; ``place_code`` is empty for the bill office."""

    unit_code: str
    person: str
    place_code: str = ""
