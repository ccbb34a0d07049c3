"""ebill.v1 catalogue messages <-> engine.catalog entries, changes and reports."""

from __future__ import annotations

import json
from datetime import date, datetime

from engine.catalog import (
    ENTRY_TYPES,
    BillCodeEntry,
    CashierEntry,
    CatalogKind,
    Change,
    ChangeReport,
    Entry,
    ItemEntry,
    MappingEntry,
    PayChannelEntry,
    PointEntry,
    UnitEntry,
)
from engine.errors import FieldError, InvalidArgument
from protos.ebill.v1 import catalog_pb2

__all__ = [
    "UNIT_INFO_KEYS",
    "change_to_pb",
    "entry_from_pb",
    "entry_to_pb",
    "kind_of",
    "optional_day",
    "report_to_pb",
]

# UnitInfo fields kept in units.info.
UNIT_INFO_KEYS = ("credit_code", "region_code", "region_name", "nature")
_SOURCES = frozenset({"local", "platform"})


def kind_of(text: str, field: str = "kind") -> CatalogKind:
    """An entry kind (certificates have calls of their own)."""
    if text in {k.value for k in ENTRY_TYPES}:
        return CatalogKind(text)
    names = ", ".join(k.value for k in ENTRY_TYPES)
    raise InvalidArgument(f"{field}: must be one of {names}, got {text[:32]!r}", field=field)


def optional_day(text: str, field: str) -> date | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise InvalidArgument(
            f"{field}: must be yyyyMMdd, got {text[:32]!r}", field=field
        ) from None


def _day_text(d: date | None) -> str:
    return d.strftime("%Y%m%d") if d else ""


def _required(path: str, **values: str) -> None:
    missing = [FieldError(f"{path}.{k}", "is required") for k, v in values.items() if not v.strip()]
    if missing:
        raise InvalidArgument.from_errors(missing)


def entry_from_pb(m: catalog_pb2.CatalogEntry, unit_code: str, path: str) -> Entry:
    which = m.WhichOneof("entry")
    p = f"{path}.{which}"
    if which == "unit":
        u = m.unit
        _required(p, unit_name=u.unit_name)
        if u.unit_code and u.unit_code != unit_code:
            raise InvalidArgument(
                f"{p}.unit_code: must be the operator's unit {unit_code}", field=f"{p}.unit_code"
            )
        info = {k: getattr(u, k) for k in UNIT_INFO_KEYS if getattr(u, k)}
        return UnitEntry(unit_code, u.unit_name, info)
    if which == "issuing_point":
        ip = m.issuing_point
        _required(p, place_code=ip.place_code, name=ip.name)
        return PointEntry(ip.place_code, ip.name, ip.enabled)
    if which == "cashier":
        c = m.cashier
        _required(p, cashier_code=c.cashier_code, name=c.name)
        return CashierEntry(c.cashier_code, c.name, c.place_code, c.enabled)
    if which == "charge_item":
        it = m.charge_item
        _required(p, charge_code=it.charge_code, charge_name=it.charge_name)
        source = it.source or "local"
        if source not in _SOURCES:
            raise InvalidArgument(f"{p}.source: must be local or platform", field=f"{p}.source")
        return ItemEntry(
            it.charge_code,
            it.charge_name,
            optional_day(it.valid_from, f"{p}.valid_from"),
            optional_day(it.valid_to, f"{p}.valid_to"),
            source,
        )
    if which == "bill_code":
        b = m.bill_code
        _required(p, bus_type=b.bus_type, bill_code=b.bill_code, bill_name=b.bill_name)
        if not (len(b.bill_code) == 8 and b.bill_code.isdigit()):
            raise InvalidArgument(f"{p}.bill_code: must be 8 digits", field=f"{p}.bill_code")
        return BillCodeEntry(b.bus_type, b.bill_code, b.bill_name, b.enabled, b.source or "local")
    if which == "pay_channel":
        pc = m.pay_channel
        _required(p, code=pc.code, name=pc.name)
        return PayChannelEntry(pc.code, pc.name, pc.enabled)
    if which == "mapping":
        mp = m.mapping
        _required(p, his_code=mp.his_code, charge_code=mp.charge_code, valid_from=mp.valid_from)
        start = optional_day(mp.valid_from, f"{p}.valid_from")
        assert start is not None  # required above
        return MappingEntry(
            mp.his_code,
            mp.charge_code,
            start,
            optional_day(mp.valid_to, f"{p}.valid_to"),
            mp.his_name,
        )
    raise InvalidArgument(f"{path}: one entry kind is required", field=path)


def entry_to_pb(e: Entry) -> catalog_pb2.CatalogEntry:
    if isinstance(e, UnitEntry):
        return catalog_pb2.CatalogEntry(
            unit=catalog_pb2.UnitInfo(
                unit_code=e.unit_code,
                unit_name=e.unit_name,
                **{k: e.info.get(k, "") for k in UNIT_INFO_KEYS},
            )
        )
    if isinstance(e, PointEntry):
        return catalog_pb2.CatalogEntry(
            issuing_point=catalog_pb2.IssuingPointEntry(
                place_code=e.place_code, name=e.name, enabled=e.enabled
            )
        )
    if isinstance(e, CashierEntry):
        return catalog_pb2.CatalogEntry(
            cashier=catalog_pb2.CashierEntry(
                cashier_code=e.cashier_code, name=e.name, place_code=e.place_code, enabled=e.enabled
            )
        )
    if isinstance(e, ItemEntry):
        return catalog_pb2.CatalogEntry(
            charge_item=catalog_pb2.ChargeItemEntry(
                charge_code=e.charge_code,
                charge_name=e.charge_name,
                valid_from=_day_text(e.valid_from),
                valid_to=_day_text(e.valid_to),
                source=e.source,
            )
        )
    if isinstance(e, BillCodeEntry):
        return catalog_pb2.CatalogEntry(
            bill_code=catalog_pb2.BillCodeEntry(
                bus_type=e.bus_type,
                bill_code=e.bill_code,
                bill_name=e.bill_name,
                enabled=e.enabled,
                source=e.source,
            )
        )
    if isinstance(e, PayChannelEntry):
        return catalog_pb2.CatalogEntry(
            pay_channel=catalog_pb2.PayChannelEntry(code=e.code, name=e.name, enabled=e.enabled)
        )
    return catalog_pb2.CatalogEntry(
        mapping=catalog_pb2.MappingEntry(
            his_code=e.his_code,
            charge_code=e.charge_code,
            valid_from=_day_text(e.valid_from),
            valid_to=_day_text(e.valid_to),
            his_name=e.his_name,
        )
    )


def change_to_pb(c: Change, change_id: int = 0) -> catalog_pb2.CatalogChange:
    def dump(v: object) -> str:
        return "" if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)

    return catalog_pb2.CatalogChange(
        id=change_id,
        kind=c.kind.value,
        key=c.key,
        op=c.op.value,
        actor=c.actor,
        at=c.at.isoformat(),
        before_json=dump(c.before),
        after_json=dump(c.after),
    )


def report_to_pb(r: ChangeReport) -> catalog_pb2.CatalogChangeReport:
    return catalog_pb2.CatalogChangeReport(
        created=r.created,
        updated=r.updated,
        withdrawn=r.withdrawn,
        unchanged=r.unchanged,
        changes=[change_to_pb(c) for c in r.changes],
    )
