"""Write-off declarations (核销) and audit reports (审验): figures computed from
the data, submitted to the fiscal platform, its answer recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg

from clients import fiscal as fp
from clients.fiscal import FiscalClient
from engine.errors import FailedPrecondition
from engine.numbers import NumberRange
from engine.statuses import Medium, WriteOffStatus
from storage.stock import writeoff as store
from storage.stock.records import AuditFigure, WriteOff
from usecases.stock._platform import platform

__all__ = [
    "AuditLine",
    "AuditReport",
    "create_write_off",
    "list_write_offs",
    "submit_audit_report",
    "submit_write_off",
    "update_write_off",
]


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One bill code's figures beside the platform's."""

    figure: AuditFigure
    platform_count: int
    platform_total_fen: int

    @property
    def matches(self) -> bool:
        f = self.figure
        return (self.platform_count, self.platform_total_fen) == (
            f.count,
            f.total_fen,
        ) and not f.unarchived


@dataclass(frozen=True, slots=True)
class AuditReport:
    id: int
    fiscal_ref: str
    lines: tuple[AuditLine, ...]


async def _one(pool: asyncpg.Pool, unit_code: str, wo_id: int) -> WriteOff:
    (wo,) = await store.write_off_history(pool, unit_code, wo_id)
    return wo


async def create_write_off(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    medium: Medium,
    code: str,
    period_from: date,
    period_to: date,
    operator: str,
) -> WriteOff:
    wo_id = await store.create_write_off(
        pool,
        unit_code=unit_code,
        medium=medium,
        code=code,
        period_from=period_from,
        period_to=period_to,
        operator=operator,
    )
    return await _one(pool, unit_code, wo_id)


async def update_write_off(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    wo_id: int,
    lost: Sequence[NumberRange],
    remark: str,
    recompute: bool,
) -> WriteOff:
    await store.update_write_off(
        pool, unit_code=unit_code, wo_id=wo_id, lost=lost, remark=remark, recompute=recompute
    )
    return await _one(pool, unit_code, wo_id)


async def submit_write_off(
    pool: asyncpg.Pool, fiscal: FiscalClient, *, unit_code: str, wo_id: int, operator: str
) -> WriteOff:
    wo = await store.write_off(pool, unit_code, wo_id)
    if wo.status != WriteOffStatus.DRAFT:
        raise FailedPrecondition(
            f"write-off {wo_id} is {wo.status}; fix it (UpdateWriteOff) first"
            if wo.status == WriteOffStatus.REJECTED
            else f"write-off {wo_id} is {wo.status}; only a draft is submitted"
        )
    if wo.figures.unfinished:
        raise FailedPrecondition(
            f"{wo.figures.unfinished} bills of the period are not yet countersigned; submit "
            "once they are, with the figures recomputed"
        )
    f = wo.figures
    declaration = fp.WriteOffDeclaration(
        unit_code=unit_code,
        medium=wo.medium,
        code=wo.code,
        period_from=wo.period_from,
        period_to=wo.period_to,
        figures=fp.WriteOffFigures(
            issued_count=f.issued_count,
            issued_fen=f.issued_fen,
            red_count=f.red_count,
            red_fen=f.red_fen,
            red_flushed_count=f.red_flushed_count,
            voided_count=f.voided_count,
            printed_count=f.printed_count,
            used=f.used,
            voided=f.voided,
            lost=wo.lost,
        ),
        ref=f"wo-{wo.id}",
    )
    receipt = await platform("the write-off declaration", fiscal.submit_write_off(declaration))
    await store.record_submission(
        pool,
        unit_code=unit_code,
        wo_id=wo_id,
        accepted=receipt.accepted,
        reason=receipt.reason,
        fiscal_ref=receipt.fiscal_ref,
        operator=operator,
    )
    return await _one(pool, unit_code, wo_id)


async def list_write_offs(pool: asyncpg.Pool, unit_code: str) -> list[WriteOff]:
    return await store.write_off_history(pool, unit_code)


async def submit_audit_report(
    pool: asyncpg.Pool,
    fiscal: FiscalClient,
    *,
    unit_code: str,
    period_from: date,
    period_to: date,
    operator: str,
) -> AuditReport:
    """Report the period's figures; each line says whether the platform agrees."""
    figures = await store.audit_figures(pool, unit_code, period_from, period_to)
    receipt = await platform(
        "the audit report",
        fiscal.submit_audit_report(
            unit_code,
            period_from,
            period_to,
            [fp.AuditLine(x.bill_code, x.count, x.total_fen) for x in figures],
        ),
    )
    theirs = {p.bill_code: (p.count, p.total_fen) for p in receipt.platform}
    lines = []
    for x in figures:
        pc, pf = theirs.get(x.bill_code, (0, 0))
        lines.append(AuditLine(x, pc, pf))
    report_id = await store.record_audit_report(
        pool,
        unit_code=unit_code,
        period_from=period_from,
        period_to=period_to,
        lines=figures,
        fiscal_ref=receipt.fiscal_ref,
        operator=operator,
    )
    return AuditReport(report_id, receipt.fiscal_ref, tuple(lines))
