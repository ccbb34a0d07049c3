"""The catalogue use case: a unit's base data (unit, issuing points, cashiers,
fiscal charge items, bill codes per business type, pay channels, HIS mappings)
listed, maintained, imported from a base-data file and synced from the fiscal
platform. gRPC, the HTTP gateway, the console and `ebill init` all call this.

Every call that changes anything runs in one transaction under the unit's
catalogue lock: every entry written with its change record and transparency-log
leaf, or none (a bad entry, a failed sync). The validate stage sees the change
at its next batch (catalog_versions moved).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from clients.fiscal import FiscalClient
from engine.catalog import (
    KIND_OF,
    CatalogKind,
    Change,
    ChangeReport,
    Entry,
    ItemEntry,
    UnitEntry,
)
from engine.errors import EbillError, FailedPrecondition, FieldError, InvalidArgument, NotFound
from engine.model import CST
from storage.catalog import edit

__all__ = ["BaseData", "Catalogue", "SyncReport", "sync_loop"]

log = logging.getLogger(__name__)

# Entries written between two progress reports of an import.
_STEP = 25
# Entries of an import are written in this order: what a later kind refers to
# (points for cashiers, items for mappings) exists by then.
_ORDER = (
    CatalogKind.UNIT,
    CatalogKind.ISSUING_POINT,
    CatalogKind.CASHIER,
    CatalogKind.CHARGE_ITEM,
    CatalogKind.BILL_CODE,
    CatalogKind.PAY_CHANNEL,
    CatalogKind.MAPPING,
)


@dataclass(frozen=True, slots=True)
class BaseData:
    """A hospital's base data as one set: the unit and its entries."""

    unit: UnitEntry
    entries: tuple[Entry, ...] = ()

    def ordered(self) -> list[Entry]:
        rank = {k: i for i, k in enumerate(_ORDER)}
        return [self.unit, *sorted(self.entries, key=lambda e: rank[KIND_OF[type(e)]])]


@dataclass(frozen=True, slots=True)
class SyncReport:
    """A sync from the platform: its catalogue version before and after, and
    what changed here (items added, renamed, withdrawn; bill codes)."""

    unit_code: str
    from_version: int
    to_version: int
    report: ChangeReport


class Catalogue:
    def __init__(self, pool: asyncpg.Pool, fiscal: FiscalClient | None = None) -> None:
        self._pool = pool
        self._fiscal = fiscal

    async def entries(self, unit_code: str, kind: CatalogKind) -> list[Entry]:
        await self._known(unit_code)
        return await edit.list_entries(self._pool, unit_code, kind)

    async def upsert(self, unit_code: str, entries: Sequence[Entry], actor: str) -> ChangeReport:
        """Create or update entries of an existing unit, all or none."""
        if any(isinstance(e, UnitEntry) and e.unit_code != unit_code for e in entries):
            raise InvalidArgument.from_errors(
                [FieldError("entries", "a unit entry must name the unit of the call")]
            )
        async with self._pool.acquire() as conn, conn.transaction():
            await edit.lock_unit(conn, unit_code)
            if not any(isinstance(e, UnitEntry) for e in entries):
                await self._known(unit_code, conn)
            return await edit.upsert(conn, unit_code, entries, actor)

    async def withdraw(
        self, unit_code: str, kind: CatalogKind, key: str, actor: str, *, on: date | None = None
    ) -> Change | None:
        async with self._pool.acquire() as conn, conn.transaction():
            await edit.lock_unit(conn, unit_code)
            return await edit.withdraw(conn, unit_code, kind, key, actor, on=on)

    async def changes(
        self, unit_code: str, *, after_id: int = 0, limit: int = 100
    ) -> list[tuple[int, Change]]:
        return await edit.changes(self._pool, unit_code, after_id=after_id, limit=min(limit, 1000))

    async def import_base_data(
        self,
        data: BaseData,
        actor: str,
        *,
        progress: Callable[[int], None] | None = None,
        dry_run: bool = False,
    ) -> ChangeReport:
        """Set a hospital up (or bring it up to date) from its base data, in one
        transaction: a second run of the same data changes nothing. ``progress``
        hears how many entries each step wrote; ``dry_run`` rolls it all back
        (what would change)."""
        unit = data.unit.unit_code
        entries = data.ordered()
        report = ChangeReport()
        async with self._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                await edit.lock_unit(conn, unit)
                for i in range(0, len(entries), _STEP):
                    step = entries[i : i + _STEP]
                    report = report.plus(await edit.upsert(conn, unit, step, actor))
                    if progress is not None:
                        progress(len(step))
            except BaseException:
                await tx.rollback()
                raise
            if dry_run:
                await tx.rollback()
            else:
                await tx.commit()
        return report

    async def sync(self, unit_code: str, actor: str) -> SyncReport:
        """Bring the unit's charge items and bill codes to the platform's (同步).

        Items the platform added are created, renamed ones updated, withdrawn ones
        end at the platform's end date (bills dated before stay valid); a
        platform item the platform no longer lists ends today. The hospital's own
        (local) items are left alone. All in one transaction.
        """
        if self._fiscal is None:
            raise FailedPrecondition("no fiscal platform configured")
        await self._known(unit_code)
        platform = await self._fiscal.base_data(unit_code)
        today = datetime.now(CST).date()
        async with self._pool.acquire() as conn, conn.transaction():
            await edit.lock_unit(conn, unit_code)
            before = await conn.fetchval(
                "SELECT platform_version FROM catalog_syncs WHERE unit_code = $1", unit_code
            )
            local = {
                e.charge_code: e
                for e in await edit.list_entries(conn, unit_code, CatalogKind.CHARGE_ITEM)
                if isinstance(e, ItemEntry)
            }
            report = ChangeReport()
            ends: list[tuple[str, date]] = []
            for item in platform.items:
                have = local.get(item.charge_code)
                # An end date arrives as a withdrawal (recorded as one), the rest as an upsert.
                keep_end = have.valid_to if have is not None else None
                if item.valid_to is not None and keep_end != item.valid_to:
                    ends.append((item.charge_code, item.valid_to))
                    item = dataclasses.replace(item, valid_to=keep_end)
                report = report.plus(await edit.upsert(conn, unit_code, [item], actor))
            listed = {i.charge_code for i in platform.items}
            ends += [
                (code, today)
                for code, e in local.items()
                if e.source == "platform" and code not in listed and e.valid_to is None
            ]
            for code, end in ends:
                change = await edit.withdraw(
                    conn, unit_code, CatalogKind.CHARGE_ITEM, code, actor, on=end
                )
                if change is not None:
                    report = report.plus(ChangeReport(withdrawn=1, changes=(change,)))
            report = report.plus(await edit.upsert(conn, unit_code, platform.bill_codes, actor))
            summary = {
                "created": report.created,
                "updated": report.updated,
                "withdrawn": report.withdrawn,
                "unchanged": report.unchanged,
            }
            await conn.execute(
                "INSERT INTO catalog_syncs (unit_code, platform_version, report)"
                " VALUES ($1, $2, $3) ON CONFLICT (unit_code) DO UPDATE SET"
                " platform_version = excluded.platform_version, synced_at = now(),"
                " report = excluded.report",
                unit_code,
                platform.version,
                summary,
            )
        return SyncReport(unit_code, int(before or 0), platform.version, report)

    async def synced_units(self) -> list[str]:
        """Units that synced once: the schedule keeps them in step."""
        rows = await self._pool.fetch("SELECT unit_code FROM catalog_syncs ORDER BY unit_code")
        return [r["unit_code"] for r in rows]

    async def _known(self, unit_code: str, conn: asyncpg.Connection | None = None) -> None:
        db = conn if conn is not None else self._pool
        if not await db.fetchval("SELECT 1 FROM units WHERE unit_code = $1", unit_code):
            raise NotFound(f"unknown unit {unit_code!r}")


async def sync_loop(catalogue: Catalogue, interval_s: float, actor: str = "schedule") -> None:
    """Sync every unit that synced once, every ``interval_s`` (EBILL_CATALOG_SYNC_S)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            units = await catalogue.synced_units()
        except Exception:
            log.exception("catalogue sync: cannot list units")
            continue
        for unit in units:
            try:
                got = await catalogue.sync(unit, actor)
            except EbillError as exc:
                log.warning("catalogue sync of %s failed: %s", unit, exc)
                continue
            if got.report.changed:
                log.info(
                    "catalogue sync of %s: platform v%d -> v%d,"
                    " %d created, %d updated, %d withdrawn",
                    unit,
                    got.from_version,
                    got.to_version,
                    got.report.created,
                    got.report.updated,
                    got.report.withdrawn,
                )
