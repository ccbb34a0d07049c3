"""What the stock use cases need from outside, as protocols: the fiscal
platform's stock calls and the few settings they read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from engine.numbers import NumberRange
from storage.stock.records import AuditFigure, GrantDecision, WriteOff
from usecases.stock._fiscal import AuditReceipt, WriteOffReceipt

__all__ = ["Fiscal", "StockSettings"]


class Fiscal(Protocol):
    async def submit_grant_application(
        self, unit_code: str, bill_code: str, count: int, ref: str, reason: str
    ) -> str: ...

    async def grant_decisions(
        self, unit_code: str, fiscal_refs: Sequence[str]
    ) -> list[GrantDecision]: ...

    async def return_segment(
        self, unit_code: str, bill_code: str, numbers: NumberRange, ref: str
    ) -> None: ...

    async def submit_write_off(self, wo: WriteOff, ref: str) -> WriteOffReceipt: ...

    async def submit_audit_report(
        self, unit_code: str, period_from: date, period_to: date, lines: Sequence[AuditFigure]
    ) -> AuditReceipt: ...


class StockSettings(Protocol):
    """The settings the stock use cases read (config.settings.Settings has them)."""

    @property
    def smtp_host(self) -> str: ...
    @property
    def smtp_port(self) -> int: ...
    @property
    def smtp_from(self) -> str: ...
    @property
    def paper_retention_days(self) -> int: ...
    @property
    def stock_interval_s(self) -> float: ...
