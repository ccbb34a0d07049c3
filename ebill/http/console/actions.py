"""A bill's refund and paper actions on the console (退费, 换开纸质票据, 作废纸质票据).

Each is a confirmation page (GET) and the action (POST), through the lifecycle
and paper use cases: they write the red bill or the paper event, and its
transparency-log leaf, in one transaction. The refund's red bill has a serial
derived from the original, so a second post answers with the same red bill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.errors import EbillError, FailedPrecondition, InvalidArgument
from engine.identity import Principal
from engine.lifecycle import BillKey
from engine.model import IssuedBill
from engine.money import format_fen, parse_fen
from engine.operator import Operator
from usecases.lifecycle import Refund
from usecases.paper import PaperOp

if TYPE_CHECKING:
    from ebill.http.console.pages import Console

__all__ = ["BillActions"]


def _where(bill: IssuedBill) -> str:
    return f"/console/bills/{bill.bill_code}/{bill.bill_no}"


class BillActions:
    def __init__(self, console: Console) -> None:
        self.c = console

    def _confirm(
        self,
        request: Request,
        who: Principal,
        bill: IssuedBill,
        what: str,
        *,
        error: EbillError | None = None,
        reason: str = "",
    ) -> Response:
        total = format_fen(bill.total_fen)
        title, warning, button = {
            "refund": (
                "确认退费",
                f"退费将全额冲销票据 {bill.bill_code} / {bill.bill_no}（{total} 元），"
                "开具一张红字票据。此操作不可撤销。",
                "确认退费",
            ),
            "convert": (
                "确认换开纸质票据",
                f"将电子票据 {bill.bill_code} / {bill.bill_no} 换开到本开票点的"
                "下一张空白纸质票据上，占用一个纸质票号。",
                "确认换开",
            ),
            "void": (
                "确认作废纸质票据",
                f"作废票据 {bill.bill_code} / {bill.bill_no} 已换开的纸质票据 "
                f"{bill.paper_code} / {bill.paper_no}；纸质票据须收回留存。此操作不可撤销。",
                "确认作废",
            ),
        }[what]
        fields: list[tuple[str, str, str, str]] = []
        if what == "refund":
            fields = [("refund_amount", "退费金额（元）", "text", total),
                      ("reason", "退费原因", "text", reason)]  # fmt: skip
        elif what == "void":
            fields = [("reason", "作废原因", "text", reason)]
        action = f"{_where(bill)}/refund" if what == "refund" else f"{_where(bill)}/paper/{what}"
        return self.c.render(
            request, "confirm.html", who, status=400 if error else 200, title=title,
            warning=warning, button=button, fields=fields, action=action, back=_where(bill),
            error=error,
        )  # fmt: skip

    # -- refund ----------------------------------------------------------------

    async def refund_form(self, request: Request, who: Principal) -> Response:
        bill = await self.c.find_bill(request, who)
        return self._confirm(request, who, bill, "refund")

    async def refund(self, request: Request, who: Principal) -> Response:
        bill = await self.c.find_bill(request, who)
        form = await request.form()
        reason = str(form.get("reason", "")).strip()
        amount = str(form.get("refund_amount", "")).strip()
        try:
            if not reason:
                raise InvalidArgument("reason: say why the bill is refunded", field="reason")
            refund_fen = _fen(amount, "refund_amount")
            if 0 < refund_fen < bill.total_fen:
                # The use case takes a partial refund only with the remainder
                # bill (the kept items, as the HIS bills them); the console has
                # no HIS data to build it from, so the HIS sends those (Refund).
                raise FailedPrecondition(
                    "refund_amount: the console refunds the whole bill; a partial refund "
                    "needs the remainder bill from the HIS (LifecycleService.Refund)",
                    field="refund_amount",
                )
            done = await self.c.s.lifecycle.refund(
                Operator(who.unit_code, who.name, bill.place_code),
                Refund(
                    original=BillKey.number(bill.bill_code, bill.bill_no),
                    red_bus_no=f"REFUND-{bill.bill_code}-{bill.bill_no}",
                    refund_fen=refund_fen,
                    reason=reason,
                ),
            )
        except (InvalidArgument, FailedPrecondition) as exc:
            if not exc.field:
                raise
            # A field's error on the form it came from, the reason kept.
            return self._confirm(request, who, bill, "refund", error=exc, reason=reason)
        return RedirectResponse(_where(done.red_bill), status_code=303)

    # -- paper -----------------------------------------------------------------

    async def convert_form(self, request: Request, who: Principal) -> Response:
        bill = await self.c.find_bill(request, who)
        return self._confirm(request, who, bill, "convert")

    async def convert(self, request: Request, who: Principal) -> Response:
        bill = await self.c.find_bill(request, who)
        await self.c.s.paper.on_bill(
            Operator(who.unit_code, who.name, bill.place_code),
            BillKey.number(bill.bill_code, bill.bill_no),
            PaperOp.CONVERT,
        )
        return RedirectResponse(_where(bill), status_code=303)

    async def void_form(self, request: Request, who: Principal) -> Response:
        bill = await self.c.find_bill(request, who)
        return self._confirm(request, who, bill, "void")

    async def void(self, request: Request, who: Principal) -> Response:
        bill = await self.c.find_bill(request, who)
        form = await request.form()
        reason = str(form.get("reason", "")).strip()
        try:
            await self.c.s.paper.on_bill(
                Operator(who.unit_code, who.name, bill.place_code),
                BillKey.number(bill.bill_code, bill.bill_no),
                PaperOp.VOID,
                reason,
            )
        except InvalidArgument as exc:
            return self._confirm(request, who, bill, "void", error=exc, reason=reason)
        return RedirectResponse(_where(bill), status_code=303)


def _fen(text: str, field: str) -> int:
    """Yuan as typed (12.30) to integer fen, with the engine's parser (no float)."""
    try:
        return parse_fen(text)
    except ValueError as exc:
        raise InvalidArgument(f"{field}: {exc}", field=field) from None
