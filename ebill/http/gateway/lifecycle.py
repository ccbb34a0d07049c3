"""Red-flush interfaces. The vendor's writeOffEBill carries no serial for the
red bill, so the gateway derives one from the original (``WO-<code>-<no>``): a
retried call names the same red bill and gets it back, never a second one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ebill.http.gateway.bills import qr_png, stamp17
from ebill.http.gateway.call import Answer, Call
from ebill.http.gateway.codes import GatewayError, Result
from ebill.http.gateway.fields import Reader, refuse, vendor_error
from ebill.http.gateway.stock import yuan
from engine.errors import InvalidArgument, NotFound
from engine.lifecycle import BillKey
from engine.model import BillStatus, ChargeItemInput, IssuedBill, PayChannelInput
from engine.money import format_fen, parse_fen
from usecases.lifecycle import RedFlush, Refund
from wire.bills import input_to_pb

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
    """writeOffPayMentVoucher: a deposit voucher refunded. The whole of it is its
    red-flush; part of it (``amt`` below the voucher's total) is the engine's
    refund (Lifecycle.refund, 退费重开): the voucher red-flushed and a voucher
    for the rest issued in one step, both or neither. The rest's serial is
    derived from the red bill's, so a retried call answers the same pair."""
    voucher = await call.bill(r, "voucherBatchCode", "voucherNo")
    amount = r.amount("amt", required=True)
    try:
        refunded = parse_fen(amount)
    except ValueError as exc:
        raise refuse("amt", str(exc)) from None
    if not 0 < refunded <= voucher.total_fen:
        raise refuse(
            "amt",
            f"more than 0.00 and at most the voucher's {format_fen(voucher.total_fen)}, "
            f"got {format_fen(refunded)}",
        )
    r.amount("ownAcBalance")  # the HIS's account balance: read, not carried
    obj = dict(r.obj)
    obj["billBatchCode"], obj["billNo"] = voucher.bill_code, voucher.bill_no
    if refunded == voucher.total_fen:
        red = await _red_flush(call, Reader(obj, r.path), void_paper=False)
        return _voucher_answer(call, red)
    return await _partial_refund(call, Reader(obj, r.path), voucher, refunded)


def _voucher_answer(call: Call, red: IssuedBill) -> dict[str, str]:
    out = _red_answer(call, red)
    return {
        "voucherBatchCode": out["eScarletBillBatchCode"],
        "voucherNo": out["eScarletBillNo"],
        "voucherRandom": out["eScarletRandom"],
        "createTime": out["createTime"],
        "billQRCode": out["billQRCode"],
        "pictureUrl": out["pictureUrl"],
    }


async def _partial_refund(call: Call, r: Reader, voucher: IssuedBill, refunded: int) -> Answer:
    # Part of a voucher is a refund, which issues a bill too: the app needs the
    # permission the gRPC Refund needs, beyond writeOffPayMentVoucher's.
    if "bill.refund" not in {str(p) for p in call.app.permissions}:
        raise GatewayError(
            Result.NOT_ALLOWED,
            f"app {call.app.app_id} may not refund part of a voucher (bill.refund)",
        )
    if voucher.source is None or not voucher.source.charge_items:
        raise refuse("voucherNo", "the voucher's request is not kept; refund it whole")
    op = call.operator(r, "operator")
    red_no = await _serial(call, voucher)
    rest = format_fen(voucher.total_fen - refunded)
    src = voucher.source
    item = src.charge_items[0]
    channel = src.pay_channels[0].pay_channel_code if src.pay_channels else ""
    remainder = replace(
        src,
        bus_no=f"{red_no}-R",
        bus_time=r.text("busDateTime", required=True, max_len=17),
        place_code=op.place_code,
        total_amount=rest,
        charge_items=(
            ChargeItemInput(
                sort_no=1,
                charge_code=item.charge_code,
                charge_name=item.charge_name,
                std=rest,
                number="1",
                amt=rest,
                his_code=item.his_code,
            ),
        ),
        list_items=(),
        pay_channels=(PayChannelInput(channel, rest),) if channel else (),
    )
    try:
        done = await call.services.lifecycle.refund(
            op,
            Refund(
                original=BillKey.number(voucher.bill_code, voucher.bill_no),
                red_bus_no=red_no,
                refund_fen=refunded,
                reason=r.text("reason", required=True, max_len=200),
                remainder=input_to_pb(remainder).SerializeToString(),
            ),
            timeout_s=call.time_left(),
        )
    except InvalidArgument as exc:
        raise vendor_error(exc) from None
    out: dict[str, Any] = _voucher_answer(call, done.red_bill)
    rem = done.remainder
    if rem is not None:
        # Not in the vendor's answer: the voucher for what stays deposited.
        out.update(
            remainVoucherBatchCode=rem.bill_code,
            remainVoucherNo=rem.bill_no,
            remainVoucherRandom=rem.check_code,
            remainAmt=yuan(rem.total_fen),
            remainPictureUrl=call.picture_url(rem.bill_code, rem.bill_no, rem.check_code),
        )
    return out
