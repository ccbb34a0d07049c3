"""Paper interfaces: the next blank number, converting an e-bill to paper and
again on new paper, voiding a converted bill's paper, voiding blank paper.

The vendor's client asks for the next number (getPaperBillNo), prints on it,
then reports it (turnPaper). The engine takes the next blank itself, so a
reported number that is not the next blank is refused before anything changes,
and a report repeated for a bill already on that number answers as done.
"""

from __future__ import annotations

from ebill.http.gateway.call import Answer, Call
from ebill.http.gateway.codes import GatewayError, Result
from ebill.http.gateway.fields import Reader, refuse
from ebill.http.gateway.lifecycle import red_flush_paper_of
from engine.errors import InvalidArgument, NotFound
from engine.lifecycle import BillKey
from engine.numbers import NumberRange
from engine.operator import Operator
from engine.statuses import PaperStatus
from usecases.paper import PaperOp
from wire.requests import code8, digits

__all__ = ["next_paper_no", "paper_void", "reprint_paper", "to_paper", "void_blank"]


async def _next(call: Call, op: Operator, paper_code: str) -> tuple[str, str]:
    stock = await call.services.paper.stock(op)
    for rng in stock.ranges:
        if rng.next_no is not None and (not paper_code or rng.paper_code == paper_code):
            return rng.paper_code, f"{rng.next_no:010d}"
    what = f"paper code {paper_code}" if paper_code else "paper"
    raise NotFound(f"issuing point {op.place_code} has no blank {what} left", field="placeCode")


def _paper_no(r: Reader, code: str = "pBillBatchCode", no: str = "pBillNo") -> tuple[str, str]:
    paper_code = r.text(code, required=True, max_len=50)
    paper_no = r.text(no, required=True, max_len=20)
    try:
        code8(paper_code, code)
        digits(paper_no, 10, no)
    except InvalidArgument as exc:
        raise refuse(exc.field, exc.message.partition(": ")[2]) from None
    return paper_code, paper_no


async def next_paper_no(call: Call, r: Reader) -> Answer:
    """getPaperBillNo."""
    op = Operator(call.unit_code, f"app:{call.app.app_id}", call.place(r))
    code, no = await _next(call, op, r.text("pBillBatchCode", max_len=50))
    return {"pBillBatchCode": code, "pBillNo": no}


async def _print(call: Call, r: Reader, what: PaperOp) -> Answer:
    bill = await call.bill(r)
    op = call.operator(r, "operator")
    paper_code, paper_no = _paper_no(r)
    if bill.paper_status is PaperStatus.PRINTED and (bill.paper_code, bill.paper_no) == (
        paper_code,
        paper_no,
    ):
        return f"电子票据{bill.bill_code}/{bill.bill_no}已在纸质票据{paper_code}/{paper_no}上"
    nxt = await _next(call, op, paper_code)
    if nxt != (paper_code, paper_no):
        raise GatewayError(
            Result.CONFLICT,
            f"pBillNo: the next blank paper of issuing point {op.place_code} is "
            f"{nxt[0]}/{nxt[1]}, not {paper_code}/{paper_no} (getPaperBillNo gives it)",
        )
    reason = "重新换开纸质票据" if what is PaperOp.REISSUE else ""
    out = await call.services.paper.on_bill(
        op, BillKey.number(bill.bill_code, bill.bill_no), what, reason
    )
    return f"电子票据{bill.bill_code}/{bill.bill_no}已换开纸质票据{out.paper_code}/{out.paper_no}"


async def to_paper(call: Call, r: Reader) -> Answer:
    """turnPaper."""
    return await _print(call, r, PaperOp.CONVERT)


async def reprint_paper(call: Call, r: Reader) -> Answer:
    """reTurnPaper: the old paper voided, the bill printed on the new number."""
    return await _print(call, r, PaperOp.REISSUE)


async def paper_void(call: Call, r: Reader) -> Answer:
    """invalidPaper: the vendor voids a converted bill's paper together with the
    e-bill (its answer is the red bill): the paper is voided and the e-bill
    red-flushed in one step, under the serial writeOffEBill would derive, so
    a writeOffEBill that follows gets the same red bill."""
    paper_code, paper_no = _paper_no(r)
    key = await call.services.gateway.bill_on_paper(call.unit_code, paper_code, paper_no)
    obj = dict(r.obj)
    obj.update(billBatchCode=key.bill_code, billNo=key.bill_no, operator=r.obj.get("author"))
    return await red_flush_paper_of(call, Reader(obj, r.path))


async def void_blank(call: Call, r: Reader) -> Answer:
    """invalidBlankBillNo."""
    op = call.operator(r, "author")
    paper_code, start = _paper_no(r, no="pBillNoStart")
    _, end = _paper_no(r, no="pBillNoEnd")
    if int(end) < int(start):
        raise refuse("pBillNoEnd", "must not be below pBillNoStart")
    stock = await call.services.paper.void_blank(
        op, paper_code, NumberRange.of(int(start), int(end)), r.text("reason", required=True)
    )
    return f"已作废空白纸质票据{paper_code} {start}-{end}，剩余{stock.remaining}份"
