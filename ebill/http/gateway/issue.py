"""Issuing interfaces: one bill per kind, batches of up to 200 and their
result, and deposit vouchers."""

from __future__ import annotations

import re
from typing import Any

from ebill.http.gateway.bills import bill_request, issued_answer, qr_png, stamp17
from ebill.http.gateway.call import Answer, Call
from ebill.http.gateway.codes import result_for
from ebill.http.gateway.fields import Reader, refuse, vendor_error, vendor_path
from engine.errors import InvalidArgument
from usecases.gateway import BatchState

__all__ = ["batch_result", "issue_batch", "issue_one", "pay_voucher"]

MAX_BATCH = 200
# An engine field path in a stored refusal ("bills[1].charge_items[0].charge_code").
_ENGINE_PATH = re.compile(r"\bbills\[\d+\](?:\.[a-z_]+(?:\[\d+\])?)*")


def issue_one(kind: str) -> Any:
    async def handler(call: Call, r: Reader) -> Answer:
        req = bill_request(r, unit_code=call.unit_code, kind=kind)
        call.place(r)
        try:
            work = await call.services.issuance.issue_one(
                req.SerializeToString(), timeout_s=call.time_left()
            )
        except InvalidArgument as exc:
            raise vendor_error(exc) from None
        return issued_answer(work, call.picture_url(work.bill_code, work.bill_no, work.check_code))

    return handler


def issue_batch(kind: str) -> Any:
    async def handler(call: Call, r: Reader) -> Answer:
        batch_no = r.text("batchNo", required=True, max_len=60)
        items = r.objects("eBillList", required=True, most=MAX_BATCH)
        raws: list[bytes] = []
        serials: list[str] = []
        for item in items:
            req = bill_request(item, unit_code=call.unit_code, kind=kind)
            call.place(item)
            if req.bus_no in serials:
                raise refuse(item.at("busNo"), f"{req.bus_no} appears twice in the batch")
            serials.append(req.bus_no)
            raws.append(req.SerializeToString())
        await call.services.gateway.submit_batch(
            app_id=call.app.app_id,
            unit_code=call.unit_code,
            batch_no=batch_no,
            method=call.method,
            bus_nos=serials,
            raws=raws,
        )
        return f"批次{batch_no}已接收，共{len(serials)}笔，请用getBatchInvoiceEBill查询开具结果"

    return handler


async def batch_result(call: Call, r: Reader) -> Answer:
    batch_no = r.text("batchNo", required=True, max_len=60)
    items = await call.services.gateway.batch(call.unit_code, batch_no)
    listing: list[dict[str, Any]] = []
    for item in items:
        row: dict[str, Any] = {"busNo": item.bus_no, "status": int(item.state)}
        if item.state is BatchState.GENERATED and item.bill is not None:
            b = item.bill
            url = call.picture_url(b.bill_code, b.bill_no, b.check_code)
            row.update(
                billBatchCode=b.bill_code,
                billNo=b.bill_no,
                random=b.check_code,
                createTime=stamp17(b),
                billQRCode=qr_png(b),
                pictureUrl=url,
                pictureNetUrl=url,
            )
        elif item.state is BatchState.FAILED:
            text = _ENGINE_PATH.sub(lambda m: vendor_path(m.group(0)), item.error)
            row["errMsg"] = f"{result_for(item.error_code).value} {text}"[:800]
        listing.append(row)
    return {"count": len(listing), "eBillList": listing}


async def pay_voucher(call: Call, r: Reader) -> Answer:
    """invoicePayMentVoucher: a deposit (预交金) issued as one voucher on the unit's
    deposit bill code. The vendor sends no charge items: the voucher carries one
    line of the deposit amount under the charge code the app names in
    EBILL_GATEWAY_DEPOSIT_CHARGE ("code:name")."""
    amount = r.amount("amt", required=True)
    code, _, name = call.services.settings.gateway_deposit_charge.partition(":")
    obj = dict(r.obj)
    obj.setdefault("payee", obj.get("payee") or obj.get("author", ""))
    obj["totalAmt"] = r.obj.get("amt")
    obj["chargeDetail"] = [
        {"sortNo": 1, "chargeCode": code, "chargeName": name or "预交金", "std": amount,
         "number": 1, "amt": amount}
    ]  # fmt: skip
    req = bill_request(Reader(obj, r.path), unit_code=call.unit_code, kind="deposit")
    call.place(r)
    try:
        work = await call.services.issuance.issue_one(
            req.SerializeToString(), timeout_s=call.time_left()
        )
    except InvalidArgument as exc:
        raise vendor_error(exc) from None
    return {
        "voucherBatchCode": work.bill_code,
        "voucherNo": work.bill_no,
        "voucherRandom": work.check_code,
        "createTime": stamp17(work),
        "billQRCode": qr_png(work),
        "pictureUrl": call.picture_url(work.bill_code, work.bill_no, work.check_code),
    }
