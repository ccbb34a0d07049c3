"""The reads the finance console makes that no other use case answers: the
unit's issuing points for its pickers, the requisitions waiting for a decision,
the stock alert rules, how many bills of a period the archive holds, one bill's
operation log, and the administration listings (staff, roles, apps, audit
reports).

The console is an edge: it translates a request and calls a use case, never
storage (docs/architecture.md). These are plain reads with no rule of their
own, so this module only names them in one place the pages can depend on;
nothing here changes state, so nothing writes a transparency-log leaf.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from storage import console as store
from storage import console_admin as admin
from storage.console import AlertRule, PendingRequisition
from storage.console_admin import AppLine, AuditReportLine, RoleLine, StaffLine
from storage.lifecycle import bill_events

__all__ = [
    "AlertRule",
    "AppLine",
    "AuditReportLine",
    "ConsoleQueries",
    "PendingRequisition",
    "RoleLine",
    "StaffLine",
]


class ConsoleQueries:
    """The console's listings of one unit's data; the caller has checked the
    permission and passes the scope (``place_code`` "" is the whole unit)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def issuing_points(self, unit_code: str) -> list[tuple[str, str]]:
        """(code, name) of every issuing point of the unit, by code."""
        return await store.issuing_points(self._pool, unit_code)

    async def pending_requisitions(
        self, unit_code: str, place_code: str = ""
    ) -> list[PendingRequisition]:
        return await store.pending_requisitions(self._pool, unit_code, place_code=place_code)

    async def alert_rules(self, unit_code: str, place_code: str = "") -> list[AlertRule]:
        return await store.alert_rules(self._pool, unit_code, place_code)

    async def archived_count(
        self, unit_code: str, first: date, last: date, place_code: str = ""
    ) -> int:
        return await store.archived_count(self._pool, unit_code, first, last, place_code)

    async def bill_events(self, bill_id: int) -> list[dict[str, Any]]:
        """One bill's operation log, oldest first (the bill page's history)."""
        return await bill_events(self._pool, bill_id)

    async def staff(self, unit_code: str) -> list[StaffLine]:
        return await admin.staff(self._pool, unit_code)

    async def roles(self) -> list[RoleLine]:
        return await admin.roles(self._pool)

    async def apps(self, unit_code: str) -> list[AppLine]:
        return await admin.apps(self._pool, unit_code)

    async def audit_reports(self, unit_code: str) -> list[AuditReportLine]:
        return await admin.audit_reports(self._pool, unit_code)
