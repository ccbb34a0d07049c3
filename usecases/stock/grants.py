"""Numbers into the unit: grant applications to the fiscal platform (赋码申请),
their decisions, enabling a grant, and opening stock (期初库存)."""

from __future__ import annotations

import asyncpg

from clients.fiscal import FiscalClient
from engine.errors import FailedPrecondition
from engine.numbers import NumberRange
from engine.statuses import ApplicationStatus
from storage.stock import grants as store
from storage.stock.records import GrantApplication, GrantDecision
from usecases.stock._platform import platform

__all__ = [
    "confirm_opening",
    "create_application",
    "delete_application",
    "enable_grant",
    "enter_opening",
    "list_applications",
    "submit_application",
    "sync_grants",
    "update_application",
]

list_applications = store.list_applications
delete_application = store.delete_application


async def create_application(
    pool: asyncpg.Pool, *, unit_code: str, bill_code: str, count: int, reason: str, operator: str
) -> GrantApplication:
    app_id = await store.create_application(
        pool,
        unit_code=unit_code,
        bill_code=bill_code,
        count=count,
        reason=reason,
        operator=operator,
    )
    return await store.application(pool, unit_code, app_id)


async def update_application(
    pool: asyncpg.Pool, *, unit_code: str, app_id: int, bill_code: str, count: int, reason: str
) -> GrantApplication:
    await store.update_application(
        pool, unit_code=unit_code, app_id=app_id, bill_code=bill_code, count=count, reason=reason
    )
    return await store.application(pool, unit_code, app_id)


async def submit_application(
    pool: asyncpg.Pool, fiscal: FiscalClient, *, unit_code: str, app_id: int
) -> GrantApplication:
    app = await store.application(pool, unit_code, app_id)
    if app.status != ApplicationStatus.DRAFT:
        raise FailedPrecondition(
            f"grant application {app_id} is {app.status}; only a draft is submitted"
        )
    # The application id is the idempotency key at the platform: a retry after
    # a lost answer is the same application.
    ref = await platform(
        "the grant application",
        fiscal.submit_grant_application(
            unit_code, app.bill_code, app.count, f"app-{app.id}", app.reason
        ),
    )
    await store.mark_submitted(pool, unit_code=unit_code, app_id=app_id, ref=ref)
    return await store.application(pool, unit_code, app_id)


async def sync_grants(pool: asyncpg.Pool, fiscal: FiscalClient, unit_code: str) -> int:
    """Fetch the platform's decisions on the unit's submitted applications; how many
    were asked about."""
    pending = await store.submitted_applications(pool, unit_code)
    if not pending:
        return 0
    decisions = await platform(
        "the application status",
        fiscal.grant_decisions(unit_code, [r.fiscal_ref for r in pending]),
    )
    await store.record_decisions(
        pool,
        unit_code,
        [GrantDecision(d.fiscal_ref, d.status, d.grant_id, d.numbers, d.reason) for d in decisions],
    )
    return len(pending)


async def enable_grant(
    pool: asyncpg.Pool, *, unit_code: str, app_id: int, operator: str
) -> GrantApplication:
    await store.enable_grant(pool, unit_code=unit_code, app_id=app_id, operator=operator)
    return await store.application(pool, unit_code, app_id)


async def enter_opening(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    numbers: NumberRange,
    next_no: int,
    operator: str,
) -> int:
    return await store.enter_opening(
        pool,
        unit_code=unit_code,
        place_code=place_code,
        bill_code=bill_code,
        start_no=numbers.start,
        end_no=numbers.end,
        next_no=next_no,
        operator=operator,
    )


confirm_opening = store.confirm_opening
