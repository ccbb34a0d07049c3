"""Loading the reference data validation checks against, per unit and versioned.

Every change of a unit's reference data bumps its row of ``catalog_versions`` in
the same transaction (triggers of migration 0012), so a reader that holds a
unit at version v learns with one indexed read whether to load it again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

import asyncpg

from engine.catalog import HisMapping, Period
from engine.model import Catalog, UnitCatalog

__all__ = ["load_catalog", "load_units", "unit_versions"]


async def unit_versions(
    conn: asyncpg.Connection | asyncpg.Pool, unit_codes: Collection[str]
) -> dict[str, int]:
    """The catalogue version of each unit (0 for a unit never changed since 0012)."""
    rows = await conn.fetch(
        "SELECT unit_code, version FROM catalog_versions WHERE unit_code = ANY($1::text[])",
        list(unit_codes),
    )
    got = {r["unit_code"]: int(r["version"]) for r in rows}
    return {u: got.get(u, 0) for u in unit_codes}


async def load_units(
    conn: asyncpg.Connection, unit_codes: Sequence[str] | None = None
) -> dict[str, UnitCatalog]:
    """The catalogue of the given units (all when None), read in one snapshot
    (repeatable read) so the version returned matches the rows."""
    # Inside a caller's transaction (a test's, an import's) that one is the snapshot.
    nested = conn.is_in_transaction()
    snapshot = (
        conn.transaction()
        if nested
        else conn.transaction(isolation="repeatable_read", readonly=True)
    )
    async with snapshot:
        where, args = (
            ("", [])
            if unit_codes is None
            else (" WHERE unit_code = ANY($1::text[])", [list(unit_codes)])
        )
        units = await conn.fetch("SELECT unit_code, unit_name FROM units" + where, *args)
        codes = [u["unit_code"] for u in units]
        versions = await unit_versions(conn, codes)
        points: dict[str, dict[str, bool]] = defaultdict(dict)
        for r in await conn.fetch(
            "SELECT unit_code, place_code, enabled FROM issuing_points"
            " WHERE unit_code = ANY($1::text[])",
            codes,
        ):
            points[r["unit_code"]][r["place_code"]] = r["enabled"]
        charges: dict[str, dict[str, str]] = defaultdict(dict)
        periods: dict[str, dict[str, Period]] = defaultdict(dict)
        for r in await conn.fetch(
            "SELECT unit_code, charge_code, charge_name, valid_from, valid_to FROM charge_codes"
            " WHERE unit_code = ANY($1::text[])",
            codes,
        ):
            charges[r["unit_code"]][r["charge_code"]] = r["charge_name"]
            if r["valid_from"] is not None or r["valid_to"] is not None:
                periods[r["unit_code"]][r["charge_code"]] = Period(r["valid_from"], r["valid_to"])
        bill_codes: dict[str, dict[str, str]] = defaultdict(dict)
        for r in await conn.fetch(
            "SELECT unit_code, bus_type, bill_code FROM bill_codes"
            " WHERE enabled AND unit_code = ANY($1::text[])",
            codes,
        ):
            bill_codes[r["unit_code"]][r["bus_type"]] = r["bill_code"]
        common = frozenset(
            r["code"] for r in await conn.fetch("SELECT code FROM pay_channel_codes")
        )
        own: dict[str, set[str]] = defaultdict(set)
        has_own: set[str] = set()
        for r in await conn.fetch(
            "SELECT unit_code, code, enabled FROM unit_pay_channels"
            " WHERE unit_code = ANY($1::text[])",
            codes,
        ):
            has_own.add(r["unit_code"])
            if r["enabled"]:
                own[r["unit_code"]].add(r["code"])
        his: dict[str, dict[str, list[HisMapping]]] = defaultdict(lambda: defaultdict(list))
        for r in await conn.fetch(
            "SELECT unit_code, his_code, his_name, charge_code, valid_from, valid_to"
            " FROM his_mappings WHERE unit_code = ANY($1::text[]) ORDER BY valid_from",
            codes,
        ):
            his[r["unit_code"]][r["his_code"]].append(
                HisMapping(
                    r["his_code"],
                    r["charge_code"],
                    Period(r["valid_from"], r["valid_to"]),
                    r["his_name"],
                )
            )
    return {
        u["unit_code"]: UnitCatalog(
            unit_code=u["unit_code"],
            unit_name=u["unit_name"],
            issuing_points=dict(points[u["unit_code"]]),
            charge_codes=dict(charges[u["unit_code"]]),
            # A unit that lists its own pay channels accepts those; others the common list.
            pay_channels=frozenset(own[u["unit_code"]]) if u["unit_code"] in has_own else common,
            bill_codes=dict(bill_codes[u["unit_code"]]),
            charge_periods=dict(periods[u["unit_code"]]),
            his_codes={k: tuple(v) for k, v in his[u["unit_code"]].items()},
            version=versions[u["unit_code"]],
        )
        for u in units
    }


async def load_catalog(pool: asyncpg.Pool) -> Catalog:
    """Every unit's catalogue."""
    async with pool.acquire() as conn:
        return Catalog(units=await load_units(conn))
