"""Maintenance of a unit's catalogue: upsert and withdraw entries of every kind,
each real change recorded (catalog_changes: who, when, before, after) and
entered in the transparency log in the caller's transaction.

Callers hold one transaction for a whole set of entries (an import, a sync), so
nothing is half written; :func:`lock_unit` serialises catalogue edits of a unit.
An entry equal to what is stored changes nothing and is counted as unchanged,
which is what makes a re-run of the same import a no-op.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from engine.catalog import (
    ENTRY_TYPES,
    KIND_OF,
    CatalogKind,
    Change,
    ChangeOp,
    ChangeReport,
    Entry,
    MappingEntry,
    overlapping,
)
from engine.errors import FailedPrecondition, FieldError, InvalidArgument, NotFound
from engine.translog import LogEntry, content_digest
from storage.translog import append_entries

__all__ = [
    "changes",
    "list_entries",
    "lock_unit",
    "record",
    "upsert",
    "withdraw",
]

# kind -> (table, key columns after unit_code, columns kept as NULL when empty)
_TABLES: Mapping[CatalogKind, tuple[str, tuple[str, ...], frozenset[str]]] = {
    CatalogKind.UNIT: ("units", (), frozenset()),
    CatalogKind.ISSUING_POINT: ("issuing_points", ("place_code",), frozenset()),
    CatalogKind.CASHIER: ("cashiers", ("cashier_code",), frozenset({"place_code"})),
    CatalogKind.CHARGE_ITEM: ("charge_codes", ("charge_code",), frozenset()),
    CatalogKind.BILL_CODE: ("bill_codes", ("bus_type",), frozenset()),
    CatalogKind.PAY_CHANNEL: ("unit_pay_channels", ("code",), frozenset()),
    CatalogKind.MAPPING: ("his_mappings", ("his_code", "valid_from"), frozenset()),
}


def _columns(kind: CatalogKind) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(ENTRY_TYPES[kind]) if f.name != "unit_code")


def _key_text(kind: CatalogKind, values: Mapping[str, Any]) -> str:
    return "/".join(_json(values[k]) for k in _TABLES[kind][1])


def _json(v: Any) -> Any:
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Mapping):
        return dict(v)
    return v


def _as_entry(kind: CatalogKind, unit_code: str, row: Mapping[str, Any]) -> Entry:
    cls = ENTRY_TYPES[kind]
    nullable = _TABLES[kind][2]
    args: dict[str, Any] = {
        c: ("" if c in nullable and row[c] is None else row[c]) for c in _columns(kind)
    }
    if kind is CatalogKind.UNIT:
        args["unit_code"] = unit_code
    return cls(**args)


async def lock_unit(conn: asyncpg.Connection, unit_code: str) -> None:
    """Serialise catalogue edits of one unit until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('ebill-catalog:' || $1, 0))", unit_code
    )


async def list_entries(
    conn: asyncpg.Connection | asyncpg.Pool, unit_code: str, kind: CatalogKind
) -> list[Entry]:
    table, key, _ = _TABLES[kind]
    cols = ", ".join(_columns(kind))
    order = ", ".join(key) or "unit_code"
    rows = await conn.fetch(
        f"SELECT {cols} FROM {table} WHERE unit_code = $1 ORDER BY {order}", unit_code
    )
    return [_as_entry(kind, unit_code, r) for r in rows]


async def record(
    conn: asyncpg.Connection,
    unit_code: str,
    kind: CatalogKind,
    key: str,
    op: ChangeOp,
    actor: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> Change:
    at = await conn.fetchval(
        "INSERT INTO catalog_changes (unit_code, kind, key, op, actor, before, after)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING at",
        unit_code,
        kind.value,
        key,
        op.value,
        actor,
        before,
        after,
    )
    content = {"kind": kind.value, "key": key, "op": op.value, "before": before, "after": after}
    await append_entries(
        conn,
        [
            LogEntry(
                op=f"catalog.{kind.value}.{op.value}",
                principal=actor,
                unit_code=unit_code,
                ref=f"{kind.value}:{key}",
                occurred_at=at.astimezone(UTC),
                content_digest=content_digest(content),
            )
        ],
    )
    return Change(unit_code, kind, key, op, actor, at, before, after)


async def _existing(
    conn: asyncpg.Connection, kind: CatalogKind, unit_code: str, values: Mapping[str, Any]
) -> dict[str, Any] | None:
    table, key, _ = _TABLES[kind]
    where = " AND ".join(f"{k} = ${i}" for i, k in enumerate(key, start=2))
    row = await conn.fetchrow(
        f"SELECT {', '.join(_columns(kind))} FROM {table} WHERE unit_code = $1"
        + (f" AND {where}" if where else "")
        + " FOR UPDATE",
        unit_code,
        *(values[k] for k in key),
    )
    return None if row is None else {c: _json(row[c]) for c in _columns(kind)}


async def _check_mapping(conn: asyncpg.Connection, unit_code: str, m: MappingEntry) -> None:
    """A mapping names a fiscal item of the unit, and its periods never overlap."""
    if not await conn.fetchval(
        "SELECT 1 FROM charge_codes WHERE unit_code = $1 AND charge_code = $2",
        unit_code,
        m.charge_code,
    ):
        raise InvalidArgument.from_errors(
            [FieldError("charge_code", f"unknown fiscal charge item {m.charge_code!r}")]
        )
    rows = await conn.fetch(
        "SELECT his_code, charge_code, valid_from, valid_to FROM his_mappings"
        " WHERE unit_code = $1 AND his_code = $2",
        unit_code,
        m.his_code,
    )
    other = overlapping(
        [MappingEntry(r[0], r[1], r[2], r[3]).as_mapping() for r in rows], m.as_mapping()
    )
    if other is not None:
        raise InvalidArgument.from_errors(
            [
                FieldError(
                    "valid_from",
                    f"HIS code {m.his_code!r} {m.as_mapping().period} overlaps its mapping "
                    f"{other.period} to {other.charge_code!r}",
                )
            ]
        )


async def upsert(
    conn: asyncpg.Connection, unit_code: str, entries: Sequence[Entry], actor: str
) -> ChangeReport:
    """Create or update entries (caller's transaction; call :func:`lock_unit` first)."""
    report = ChangeReport()
    for entry in entries:
        kind = KIND_OF[type(entry)]
        table, key, nullable = _TABLES[kind]
        values = {c: getattr(entry, c) for c in _columns(kind)}
        if isinstance(entry, MappingEntry):
            await _check_mapping(conn, unit_code, entry)
        before = await _existing(conn, kind, unit_code, values)
        after = {c: _json(v) for c, v in values.items()}
        if before == after:
            report = report.plus(ChangeReport(unchanged=1))
            continue
        cols = ("unit_code", *values)
        args = [unit_code, *((None if c in nullable and v == "" else v) for c, v in values.items())]
        conflict = ", ".join(("unit_code", *key))
        sets = ", ".join(f"{c} = excluded.{c}" for c in values if c not in key)
        await conn.execute(
            f"INSERT INTO {table} ({', '.join(cols)})"
            f" VALUES ({', '.join(f'${i}' for i in range(1, len(cols) + 1))})"
            f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}",
            *args,
        )
        op = ChangeOp.CREATE if before is None else ChangeOp.UPDATE
        change = await record(
            conn, unit_code, kind, _key_text(kind, values), op, actor, before, after
        )
        report = report.plus(
            ChangeReport(
                created=int(op is ChangeOp.CREATE),
                updated=int(op is ChangeOp.UPDATE),
                changes=(change,),
            )
        )
    return report


async def withdraw(
    conn: asyncpg.Connection,
    unit_code: str,
    kind: CatalogKind,
    key: str,
    actor: str,
    *,
    on: date | None = None,
) -> Change | None:
    """Stop an entry being usable: charge items and mappings from ``on`` (their
    valid_to; bills dated before stay valid), the others at once (disabled).
    None when it was already withdrawn by then."""
    table, _, _ = _TABLES[kind]
    cols = _columns(kind)
    if kind is CatalogKind.UNIT:
        raise FailedPrecondition("a unit cannot be withdrawn")
    if kind is CatalogKind.MAPPING:
        if on is None:
            raise InvalidArgument.from_errors([FieldError("on", "a mapping ends on a date")])
        row = await conn.fetchrow(
            f"SELECT {', '.join(cols)} FROM his_mappings WHERE unit_code = $1 AND his_code = $2"
            " AND valid_from < $3 AND (valid_to IS NULL OR valid_to > $3)"
            " ORDER BY valid_from DESC LIMIT 1 FOR UPDATE",
            unit_code,
            key,
            on,
        )
        where = "his_code = $2 AND valid_from = $4"
    else:
        row = await conn.fetchrow(
            f"SELECT {', '.join(cols)} FROM {table} WHERE unit_code = $1"
            f" AND {_TABLES[kind][1][0]} = $2 FOR UPDATE",
            unit_code,
            key,
        )
        where = f"{_TABLES[kind][1][0]} = $2"
    if row is None:
        if kind is CatalogKind.MAPPING:
            return None  # nothing mapped at that date: already ended
        raise NotFound(f"{kind.value} {key!r} of unit {unit_code}")
    before = {c: _json(row[c]) for c in cols}
    if kind in (CatalogKind.CHARGE_ITEM, CatalogKind.MAPPING):
        day = on or datetime.now(UTC).date()
        if row["valid_to"] is not None and row["valid_to"] <= day:
            return None
        if row["valid_from"] is not None and day <= row["valid_from"]:
            raise InvalidArgument.from_errors(
                [FieldError("on", f"must be after the entry's start {row['valid_from']}")]
            )
        args: list[Any] = [unit_code, key, day]
        if kind is CatalogKind.MAPPING:
            args.append(row["valid_from"])
        await conn.execute(
            f"UPDATE {table} SET valid_to = $3 WHERE unit_code = $1 AND {where}", *args
        )
        after = {**before, "valid_to": day.isoformat()}
    else:
        if not row["enabled"]:
            return None
        await conn.execute(
            f"UPDATE {table} SET enabled = false WHERE unit_code = $1 AND {where}", unit_code, key
        )
        after = {**before, "enabled": False}
    return await record(conn, unit_code, kind, key, ChangeOp.WITHDRAW, actor, before, after)


async def changes(
    conn: asyncpg.Connection | asyncpg.Pool, unit_code: str, *, after_id: int = 0, limit: int = 100
) -> list[tuple[int, Change]]:
    """The unit's change records, oldest first, after ``after_id`` (paging)."""
    rows = await conn.fetch(
        "SELECT id, unit_code, kind, key, op, actor, at, before, after FROM catalog_changes"
        " WHERE unit_code = $1 AND id > $2 ORDER BY id LIMIT $3",
        unit_code,
        after_id,
        limit,
    )
    return [
        (
            int(r["id"]),
            Change(
                r["unit_code"],
                CatalogKind(r["kind"]),
                r["key"],
                ChangeOp(r["op"]),
                r["actor"],
                r["at"],
                r["before"],
                r["after"],
            ),
        )
        for r in rows
    ]
