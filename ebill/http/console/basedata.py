"""Base data on the console (基础数据): fiscal charge items, the HIS code mapping
(对照) and issuing points, read with catalog.read and changed with
catalog.manage, through the catalogue use case (usecases/catalog.py): each change
is written with its change record and transparency-log leaf under the unit's
catalogue lock, and a withdrawal has a confirmation page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.catalog import CatalogKind, Entry, ItemEntry, MappingEntry, PointEntry
from engine.errors import EbillError, FieldError, InvalidArgument
from engine.identity import Permission, Principal
from engine.model import CST
from usecases.catalog import Catalogue

if TYPE_CHECKING:
    from ebill.http.console.pages import Console

__all__ = ["KINDS", "BaseDataPages"]

# The kinds this page keeps: label, the entry's fields (name, label) in order.
KINDS: dict[CatalogKind, tuple[str, tuple[tuple[str, str], ...]]] = {
    CatalogKind.CHARGE_ITEM: ("收费项目", (
        ("charge_code", "项目编码"), ("charge_name", "项目名称"),
        ("valid_from", "启用日期"), ("valid_to", "停用日期"))),
    CatalogKind.MAPPING: ("HIS 项目对照", (
        ("his_code", "HIS 编码"), ("his_name", "HIS 名称"), ("charge_code", "财政项目编码"),
        ("valid_from", "起始日期"), ("valid_to", "终止日期"))),
    CatalogKind.ISSUING_POINT: ("开票点", (
        ("place_code", "开票点编码"), ("name", "名称"), ("enabled", "启用"))),
}  # fmt: skip


def _kind(raw: str) -> CatalogKind:
    try:
        kind = CatalogKind(raw or CatalogKind.CHARGE_ITEM.value)
    except ValueError:
        kind = CatalogKind.UNIT  # refused just below, naming the field
    if kind not in KINDS:
        raise InvalidArgument("kind: one of " + ", ".join(k.value for k in KINDS), field="kind")
    return kind


def _day(form: FormData, name: str, errors: list[FieldError]) -> date | None:
    raw = str(form.get(name, "")).strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors.append(FieldError(name, "a date like 2026-11-23"))
        return None


def _entry(kind: CatalogKind, form: FormData) -> Entry:
    """The entry the form describes, or every missing or malformed field at once."""
    errors: list[FieldError] = []
    text = {k: str(form.get(k, "")).strip() for k, _ in KINDS[kind][1]}
    required = {
        CatalogKind.CHARGE_ITEM: ("charge_code", "charge_name"),
        CatalogKind.MAPPING: ("his_code", "charge_code", "valid_from"),
        CatalogKind.ISSUING_POINT: ("place_code", "name"),
    }[kind]
    errors += [FieldError(k, "is required") for k in required if not text[k]]
    start, end = _day(form, "valid_from", errors), _day(form, "valid_to", errors)
    if errors:
        raise InvalidArgument.from_errors(errors)
    if kind is CatalogKind.CHARGE_ITEM:
        return ItemEntry(text["charge_code"], text["charge_name"], start, end)
    if kind is CatalogKind.MAPPING:
        assert start is not None
        return MappingEntry(text["his_code"], text["charge_code"], start, end, text["his_name"])
    return PointEntry(text["place_code"], text["name"], form.get("enabled") == "on")


def _key(entry: Entry) -> str:
    if isinstance(entry, ItemEntry | MappingEntry):
        return entry.charge_code if isinstance(entry, ItemEntry) else entry.his_code
    assert isinstance(entry, PointEntry)
    return entry.place_code


class BaseDataPages:
    def __init__(self, console: Console) -> None:
        self.c = console
        self.catalogue = Catalogue(console.s.pool)

    async def listing(self, request: Request, who: Principal) -> Response:
        kind = _kind(request.query_params.get("kind", ""))
        entries = await self.catalogue.entries(who.unit_code, kind)
        rows = [[_show(getattr(e, f)) for f, _ in KINDS[kind][1]] for e in entries]
        return self.c.render(
            request, "basedata.html", who, kinds=KINDS, kind=kind, rows=rows,
            keys=[_key(e) for e in entries], done=request.query_params.get("done", ""),
            can_edit=who.can(Permission.CATALOG_MANAGE),
        )  # fmt: skip

    async def edit_form(self, request: Request, who: Principal) -> Response:
        """A new entry (?kind=) or an existing one to change (?kind=&key=)."""
        kind = _kind(request.query_params.get("kind", ""))
        given: dict[str, str] = {}
        key = request.query_params.get("key", "")
        for e in await self.catalogue.entries(who.unit_code, kind) if key else []:
            if _key(e) == key:
                given = {f: _show(getattr(e, f)) for f, _ in KINDS[kind][1]}
        return self._edit_page(request, who, kind, given)

    def _edit_page(
        self,
        request: Request,
        who: Principal,
        kind: CatalogKind,
        given: dict[str, str],
        error: EbillError | None = None,
    ) -> Response:
        return self.c.render(
            request, "basedata_edit.html", who, status=400 if error else 200, kind=kind,
            label=KINDS[kind][0], fields=KINDS[kind][1], given=given, error=error,
        )  # fmt: skip

    async def save(self, request: Request, who: Principal) -> Response:
        form = await request.form()
        kind = _kind(str(form.get("kind", "")))
        try:
            entry = _entry(kind, form)
            await self.catalogue.upsert(who.unit_code, [entry], who.label)
        except EbillError as exc:
            if not exc.field:
                raise
            given = {f: str(form.get(f, "")) for f, _ in KINDS[kind][1]}
            return self._edit_page(request, who, kind, given, error=exc)
        return RedirectResponse(
            f"/console/catalog?kind={kind.value}&done=saved-{_key(entry)}", status_code=303
        )

    def _withdraw_page(
        self, request: Request, who: Principal, kind: CatalogKind, key: str,
        error: EbillError | None = None,
    ) -> Response:  # fmt: skip
        dated = kind in (CatalogKind.CHARGE_ITEM, CatalogKind.MAPPING)
        today = datetime.now(UTC).astimezone(CST).date().isoformat()
        fields = [("kind", "", "hidden", kind.value), ("key", "编码", "text", key)]
        fields += [("on", "停用日期", "date", today)] if dated else []
        return self.c.render(
            request, "confirm.html", who, status=400 if error else 200,
            title=f"确认停用{KINDS[kind][0]}", button="确认停用", fields=fields, error=error,
            warning=f"{KINDS[kind][0]} {key} 停用后不能再用于新开的票据"
            + ("（停用日期之前开具的票据不受影响）。" if dated else "。"),
            action="/console/catalog/withdraw",
            back=f"/console/catalog?kind={kind.value}",
        )  # fmt: skip

    async def withdraw_form(self, request: Request, who: Principal) -> Response:
        kind = _kind(request.query_params.get("kind", ""))
        return self._withdraw_page(request, who, kind, request.query_params.get("key", ""))

    async def withdraw(self, request: Request, who: Principal) -> Response:
        form = await request.form()
        kind = _kind(str(form.get("kind", "")))
        key = str(form.get("key", "")).strip()
        try:
            if not key:
                raise InvalidArgument("key: is required", field="key")
            errors: list[FieldError] = []
            on = _day(form, "on", errors)
            if errors:
                raise InvalidArgument.from_errors(errors)
            await self.catalogue.withdraw(who.unit_code, kind, key, who.label, on=on)
        except EbillError as exc:
            if not exc.field:
                raise
            return self._withdraw_page(request, who, kind, key, error=exc)
        return RedirectResponse(
            f"/console/catalog?kind={kind.value}&done=withdrawn-{key}", status_code=303
        )


def _show(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else ""
    return str(value)
