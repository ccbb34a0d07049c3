"""Red-flush interfaces. The vendor's writeOffEBill carries no serial for the
red bill, so the gateway derives one from the original (``WO-<code>-<no>``): a
retried call names the same red bill and gets it back, never a second one."""

from __future__ import annotations

from ebill.http.gateway.bills import qr_png, stamp17
from ebill.http.gateway.call import Answer, Call
from ebill.http.gateway.fields import Reader, refuse
from engine.errors import NotFound
from engine.lifecycle import BillKey
from engine.model import BillStatus, IssuedBill
from engine.money import format_fen, parse_fen
from usecases.lifecycle import RedFlush

__all__ = [
    "red_flush",
    "red_flush_paper",
    "red_flush_paper_of",
    "red_flush_voucher",
    "red_serial",
]

# A red bill the platform refused spends its serial; the next attempt takes the
# next derived serial, so a retry after a refusal still works and stays
# idempotent. More refusals than this for one bill need an operator.
MAX_RED_ATTEMPTS = 5


def red_serial(bill_code: str, bill_no: str, attempt: int = 1) -> str:
    base = f"WO-{bill_code}-{bill_no}"
    return base if attempt == 1 else f"{base}-{attempt}"


async def _serial(call: Call, original: IssuedBill) -> str:
    """The first derived serial not spent by a red bill the platform refused."""
    for attempt in range(1, MAX_RED_ATTEMPTS + 1):
        serial = red_serial(original.bill_code, original.bill_no, attempt)
        try:
            taken = await call.services.issuance.get_bill(BillKey.serial(call.unit_code, serial))
        except NotFound:
            return serial
        if taken.status is not BillStatus.REJECTED:
            return serial  # the red bill of an earlier call: the use case replays it
    raise refuse(
        "billNo",
        f"the fiscal platform refused {MAX_RED_ATTEMPTS} red bills for this bill; "
        "an operator must look at it",
    )


async def _red_flush(call: Call, r: Reader, *, void_paper: bool) -> IssuedBill:
    original = await call.bill(r)
    op = call.operator(r, "operator")
    r.text("busDateTime", max_len=17)  # the red bill is dated when it is issued
    done = await call.services.lifecycle.red_flush(
        op,
        RedFlush(
            original=BillKey.number(original.bill_code, original.bill_no),
            bus_no=await _serial(call, original),
            reason=r.text("reason", required=True, max_len=200),
            void_paper=void_paper,
        ),
        timeout_s=call.time_left(),
    )
    return done.red_bill


def _red_answer(call: Call, red: IssuedBill) -> dict[str, str]:
    url = call.picture_url(red.bill_code, red.bill_no, red.check_code)
    return {
        "eScarletBillBatchCode": red.bill_code,
        "eScarletBillNo": red.bill_no,
        "eScarletRandom": red.check_code,
        "createTime": stamp17(red),
        "billQRCode": qr_png(red),
        "pictureUrl": url,
        "pictureNetUrl": url,
    }


async def red_flush(call: Call, r: Reader) -> Answer:
    """writeOffEBill: a bill printed to paper needs its paper voided first
    (invalidPaper) or writeOffEBillToPaper."""
    return _red_answer(call, await _red_flush(call, r, void_paper=False))


async def red_flush_paper(call: Call, r: Reader) -> Answer:
    """writeOffEBillToPaper: the paper is voided and the e-bill red-flushed in one
    step. The engine prints no red paper bill: pBillBatchCode/pBillNo are read
    and not used."""
    r.text("pBillBatchCode", max_len=50)
    r.text("pBillNo", max_len=20)
    return await red_flush_paper_of(call, r)


async def red_flush_paper_of(call: Call, r: Reader) -> Answer:
    """Void the paper and red-flush the e-bill that ``billBatchCode``/``billNo`` name."""
    return _red_answer(call, await _red_flush(call, r, void_paper=True))


async def red_flush_voucher(call: Call, r: Reader) -> Answer:
    """writeOffPayMentVoucher: the whole deposit voucher red-flushed (its refund).
    A partial refund of a deposit is its red-flush plus a new voucher for the
    rest, two calls the HIS makes."""
    voucher = await call.bill(r, "voucherBatchCode", "voucherNo")
    amount = r.amount("amt", required=True)
    try:
        refunded = parse_fen(amount)
    except ValueError as exc:
        raise refuse("amt", str(exc)) from None
    if refunded != voucher.total_fen:
        raise refuse(
            "amt",
            f"a deposit voucher is refunded whole ({format_fen(voucher.total_fen)}); "
            "for part of it red-flush the voucher and issue a new one for the rest",
        )
    obj = dict(r.obj)
    obj["billBatchCode"], obj["billNo"] = voucher.bill_code, voucher.bill_no
    red = await _red_flush(call, Reader(obj, r.path), void_paper=False)
    out = _red_answer(call, red)
    return {
        "voucherBatchCode": out["eScarletBillBatchCode"],
        "voucherNo": out["eScarletBillNo"],
        "voucherRandom": out["eScarletRandom"],
        "createTime": out["createTime"],
        "billQRCode": out["billQRCode"],
        "pictureUrl": out["pictureUrl"],
    }
