"""The catalogue as the rules see it: validity periods of fiscal charge items and
HIS-code -> fiscal-code mappings (对照) effective on a bill's date. No I/O.

Periods are half-open, [valid_from, valid_to): an item the platform withdraws on
day D may still be put on bills dated before D and is refused from D on; bills
issued before are untouched (nothing re-validates a stored bill).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "ENTRY_TYPES",
    "KIND_OF",
    "BillCodeEntry",
    "CashierEntry",
    "CatalogKind",
    "Change",
    "ChangeOp",
    "ChangeReport",
    "Entry",
    "HisMapping",
    "ItemEntry",
    "MappedItem",
    "MappingEntry",
    "PayChannelEntry",
    "Period",
    "PointEntry",
    "Resolution",
    "UnitEntry",
    "effective",
    "map_item",
    "overlapping",
    "resolve_his",
    "usable",
]


class CatalogKind(StrEnum):
    """What a catalogue change is about (the ``kind`` of a change record)."""

    UNIT = "unit"
    ISSUING_POINT = "issuing_point"
    CASHIER = "cashier"
    CHARGE_ITEM = "charge_item"
    BILL_CODE = "bill_code"
    PAY_CHANNEL = "pay_channel"
    MAPPING = "mapping"
    # Not an entry kind (no upsert/list as entries): the unit's signing certificates.
    CERTIFICATE = "certificate"


@dataclass(frozen=True, slots=True)
class Period:
    """[valid_from, valid_to); None is open on that side."""

    valid_from: date | None = None
    valid_to: date | None = None

    def covers(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day < self.valid_to
        )

    def overlaps(self, other: Period) -> bool:
        lo = max(self.valid_from or date.min, other.valid_from or date.min)
        hi = min(self.valid_to or date.max, other.valid_to or date.max)
        return lo < hi

    def __str__(self) -> str:
        lo = self.valid_from.isoformat() if self.valid_from else "…"
        hi = self.valid_to.isoformat() if self.valid_to else "…"
        return f"[{lo}, {hi})"


@dataclass(frozen=True, slots=True)
class HisMapping:
    """One period of an HIS charge code's mapping to a fiscal charge item code."""

    his_code: str
    charge_code: str
    period: Period
    his_name: str = ""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The fiscal code an HIS code maps to on a day, or why there is none."""

    charge_code: str = ""
    error: str = ""


def effective(mappings: Sequence[HisMapping], day: date) -> HisMapping | None:
    """The mapping period covering ``day`` (periods of one code never overlap)."""
    for m in mappings:
        if m.period.covers(day):
            return m
    return None


def resolve_his(by_his: Mapping[str, Sequence[HisMapping]], his_code: str, day: date) -> Resolution:
    """The fiscal charge code ``his_code`` maps to on ``day``."""
    periods = by_his.get(his_code)
    if not periods:
        return Resolution(error="has no mapping to a fiscal charge item (对照)")
    m = effective(periods, day)
    if m is None:
        spans = ", ".join(str(p.period) for p in periods[:3])
        return Resolution(error=f"is not mapped on {day.isoformat()} (mapped {spans})")
    return Resolution(charge_code=m.charge_code)


def usable(periods: Mapping[str, Period], charge_code: str, day: date) -> str:
    """'' when the fiscal item may be put on a bill dated ``day``, else why not."""
    p = periods.get(charge_code)
    if p is None or p.covers(day):
        return ""
    if p.valid_to is not None and day >= p.valid_to:
        return f"was withdrawn from {p.valid_to.isoformat()}"
    return f"is usable only from {p.valid_from.isoformat() if p.valid_from else '…'}"


def overlapping(existing: Sequence[HisMapping], new: HisMapping) -> HisMapping | None:
    """The period of the same HIS code ``new`` would overlap, other than its own start."""
    for m in existing:
        if m.his_code != new.his_code or m.period.valid_from == new.period.valid_from:
            continue
        if m.period.overlaps(new.period):
            return m
    return None


class _Sent(Protocol):
    @property
    def his_code(self) -> str: ...
    @property
    def charge_code(self) -> str: ...
    @property
    def charge_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class MappedItem:
    """A charge item's fiscal code and name after the mapping step, or the
    error and the field of the item (``his_code`` or ``charge_code``) it names."""

    charge_code: str = ""
    charge_name: str = ""
    field: str = ""
    error: str = ""


def map_item(
    by_his: Mapping[str, Sequence[HisMapping]],
    names: Mapping[str, str],
    item: _Sent,
    day: date,
    quote: Callable[[str], str] = repr,
) -> MappedItem:
    """Resolve a charge item sent with an HIS code on a bill dated ``day``."""
    res = resolve_his(by_his, item.his_code, day)
    if res.error:
        return MappedItem(
            field="his_code", error=f"HIS charge code {quote(item.his_code)} {res.error}"
        )
    if item.charge_code and item.charge_code != res.charge_code:
        return MappedItem(
            field="charge_code",
            error=f"{quote(item.charge_code)} differs from {quote(res.charge_code)}, "
            f"the fiscal code HIS code {quote(item.his_code)} maps to",
        )
    # The bill shows the fiscal item's name unless the HIS sent one.
    return MappedItem(res.charge_code, item.charge_name or names.get(res.charge_code, ""))


# The entries of a unit's catalogue, one type per kind. Field names are the
# columns storage keeps them in; the unit code travels beside them.


@dataclass(frozen=True, slots=True)
class UnitEntry:
    unit_code: str
    unit_name: str
    # 统一社会信用代码, 行政区划, 单位性质 ...: kept as given, shown on queries.
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PointEntry:
    place_code: str
    name: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class CashierEntry:
    cashier_code: str
    name: str
    place_code: str = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ItemEntry:
    """A fiscal charge item (收费项目) the unit may put on its bills."""

    charge_code: str
    charge_name: str
    valid_from: date | None = None
    valid_to: date | None = None
    source: str = "local"


@dataclass(frozen=True, slots=True)
class BillCodeEntry:
    bus_type: str
    bill_code: str
    bill_name: str
    enabled: bool = True
    source: str = "local"


@dataclass(frozen=True, slots=True)
class PayChannelEntry:
    code: str
    name: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class MappingEntry:
    """An HIS code's mapping to a fiscal charge item from ``valid_from``."""

    his_code: str
    charge_code: str
    valid_from: date
    valid_to: date | None = None
    his_name: str = ""

    def as_mapping(self) -> HisMapping:
        return HisMapping(
            self.his_code, self.charge_code, Period(self.valid_from, self.valid_to), self.his_name
        )


Entry = (
    UnitEntry
    | PointEntry
    | CashierEntry
    | ItemEntry
    | BillCodeEntry
    | PayChannelEntry
    | MappingEntry
)

ENTRY_TYPES: Mapping[CatalogKind, type[Entry]] = {
    CatalogKind.UNIT: UnitEntry,
    CatalogKind.ISSUING_POINT: PointEntry,
    CatalogKind.CASHIER: CashierEntry,
    CatalogKind.CHARGE_ITEM: ItemEntry,
    CatalogKind.BILL_CODE: BillCodeEntry,
    CatalogKind.PAY_CHANNEL: PayChannelEntry,
    CatalogKind.MAPPING: MappingEntry,
}
KIND_OF: Mapping[type[Entry], CatalogKind] = {t: k for k, t in ENTRY_TYPES.items()}


class ChangeOp(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    WITHDRAW = "withdraw"


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded change of the catalogue: who, when, before and after."""

    unit_code: str
    kind: CatalogKind
    key: str
    op: ChangeOp
    actor: str
    at: datetime
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class ChangeReport:
    """What an upsert, an import or a sync did."""

    created: int = 0
    updated: int = 0
    withdrawn: int = 0
    unchanged: int = 0
    changes: tuple[Change, ...] = ()

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.withdrawn

    def plus(self, other: ChangeReport) -> ChangeReport:
        return ChangeReport(
            self.created + other.created,
            self.updated + other.updated,
            self.withdrawn + other.withdrawn,
            self.unchanged + other.unchanged,
            self.changes + other.changes,
        )
