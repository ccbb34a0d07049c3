"""Reading bills back: by serial after an unanswered issue call, their status,
their H5 page and notice, and the connection test."""

from __future__ import annotations

import base64
from typing import Any

from ebill.http.gateway.bills import qr_png, stamp17
from ebill.http.gateway.call import Answer, Call
from ebill.http.gateway.codes import GatewayError, Result
from ebill.http.gateway.fields import Reader, refuse
from engine.delivery import Channel, normalise_address
from engine.errors import NotFound, Unavailable
from engine.lifecycle import BillKey
from engine.model import BillStatus, IssuedBill
from engine.statuses import PaperStatus

__all__ = [
    "bill_by_serial",
    "bill_status",
    "notice_picture",
    "picture_url",
    "send_notice",
    "test_connect",
]

# The bill kinds' names as the vendor's billName shows them.
BILL_NAMES = {
    "outpatient": "医疗门诊收费票据（电子）",
    "emergency": "医疗门诊收费票据（电子）",
    "checkup": "医疗门诊收费票据（电子）",
    "registration": "医疗门诊收费票据（电子）",
    "inpatient": "医疗住院收费票据（电子）",
    "deposit": "住院预交金凭证（电子）",
    "non_tax": "非税收入一般缴款书（电子）",
    "current_account": "行政事业单位资金往来结算票据（电子）",
    "donation": "公益事业捐赠票据（电子）",
}


async def test_connect(call: Call, r: Reader) -> Answer:
    return f"连接成功: {r.text('testValue', max_len=50)}"


async def _red(call: Call, bill: IssuedBill) -> IssuedBill | None:
    if not bill.red_by:
        return None
    code, _, no = bill.red_by.partition("/")
    return await call.services.issuance.get_bill(BillKey.number(code, no))


def _scarlet(call: Call, red: IssuedBill | None) -> dict[str, Any]:
    if red is None:
        return {"isScarlet": "0"}
    url = call.picture_url(red.bill_code, red.bill_no, red.check_code)
    return {
        "isScarlet": "1",
        "scarletBillBatchCode": red.bill_code,
        "scarletBillNo": red.bill_no,
        "scarletRandom": red.check_code,
        "scarletBillQRCode": qr_png(red),
        "scarletCreateTime": stamp17(red),
        "scarletBillBusDate": red.source.bus_time if red.source else stamp17(red),
        "scarletPictureUrl": url,
        "scarletPictureNetUrl": url,
    }


async def bill_by_serial(call: Call, r: Reader) -> Answer:
    """getEBillByBusNo: what an issue call whose answer was lost produced."""
    bus_no = r.text("busNo", required=True, max_len=50)
    bus_time = r.text("busDateTime", required=True, max_len=17)
    bill = call.own(await call.services.issuance.get_bill(BillKey.serial(call.unit_code, bus_no)))
    if bill.source is not None and bill.source.bus_time != bus_time:
        raise NotFound(
            f"busDateTime: bill for busNo {bus_no} was issued for busDateTime "
            f"{bill.source.bus_time}, not {bus_time}",
            field="busDateTime",
        )
    if bill.status is BillStatus.RESERVED:
        raise Unavailable(
            f"bill {bill.bill_code}/{bill.bill_no} for busNo {bus_no} is numbered but not "
            "signed yet; send the issue request again (same busNo) to complete it"
        )
    url = call.picture_url(bill.bill_code, bill.bill_no, bill.check_code)
    return {
        "billBatchCode": bill.bill_code,
        "billNo": bill.bill_no,
        "random": bill.check_code,
        "billQRCode": qr_png(bill),
        "createTime": stamp17(bill),
        "pictureUrl": url,
        "pictureNetUrl": url,
        **_scarlet(call, await _red(call, bill)),
    }


async def bill_status(call: Call, r: Reader) -> Answer:
    """getEBillStatesByBillInfo: normal or void, printed to paper, red-flushed."""
    bill = await call.bill(r)
    printed = bill.paper_status is PaperStatus.PRINTED
    out: dict[str, Any] = {
        "billName": BILL_NAMES.get(bill.bill_kind, bill.bill_kind),
        "billBatchCode": bill.bill_code,
        "billNo": bill.bill_no,
        "random": bill.check_code,
        "ivcDateTime": stamp17(bill),
        # The engine never voids an e-bill (it is red-flushed); one the platform
        # refused for good is void.
        "state": "2" if bill.status is BillStatus.REJECTED else "1",
        "isPrtPaper": "1" if printed else "0",
    }
    if printed:
        out.update(pBillBatchCode=bill.paper_code, pBillNo=bill.paper_no)
    out.update(_scarlet(call, await _red(call, bill)))
    return out


def _checked(r: Reader, bill: IssuedBill) -> None:
    random = r.text("random", max_len=20)
    if random and random != bill.check_code:
        raise refuse(r.at("random"), "does not match the bill's check code")


async def picture_url(call: Call, r: Reader) -> Answer:
    """getEBillPicUrl: the bill's H5 page, served by the public pages."""
    bill = await call.bill(r)
    _checked(r, bill)
    url = call.picture_url(bill.bill_code, bill.bill_no, bill.check_code)
    if not url:
        raise GatewayError(
            Result.NOT_SERVED, "this engine does not serve H5 bill pages yet (getEBillPicUrl)"
        )
    return {"pictureUrl": url, "pictureNetUrl": url}


async def notice_picture(call: Call, r: Reader) -> Answer:
    """getEBillNotifyPic: the notice's fields and QR code, and with isReturnPic 1
    the notice slip itself (Rendering.notice: a PNG, payer masked)."""
    bill = await call.bill(r)
    wants_picture = r.text("isReturnPic", max_len=1)
    if wants_picture not in ("", "0", "1"):
        raise refuse(r.at("isReturnPic"), "0 or 1")
    out: dict[str, Any] = {
        "billBatchCode": bill.bill_code,
        "billNo": bill.bill_no,
        "random": bill.check_code,
        "createTime": stamp17(bill),
        "billQRCode": qr_png(bill),
    }
    if wants_picture == "1":
        rendering = call.services.rendering
        if rendering is None:
            raise GatewayError(
                Result.NOT_SERVED,
                "this engine renders no notice pictures (no rendering); ask with isReturnPic 0",
            )
        png = await rendering.notice(bill.bill_code, bill.bill_no, None)
        out["pictureData"] = base64.b64encode(png).decode("ascii")
    return out


# The vendor's notice types (appendix 6) and the delivery channel of each.
NOTICE_CHANNELS = {"1201": Channel.SMS, "1202": Channel.EMAIL}


async def send_notice(call: Call, r: Reader) -> Answer:
    """sendBillNotice: the bill sent again by SMS or email through the delivery
    outbox (Delivery.resend). The engine sends a bill only to the addresses it
    was issued with: a noticeValue that is not the payer's phone number or email
    on the bill is refused (sending a bill with its payer's data to an address a
    caller names would disclose it)."""
    bill = await call.bill(r)
    delivery = call.services.extra.get("delivery")
    payer = bill.source.payer if bill.source is not None else None
    channels: list[Channel] = []
    for n in r.objects("noticeList", required=True, most=10):
        kind = n.text("noticeType", required=True, max_len=10)
        channel = NOTICE_CHANNELS.get(kind)
        if channel is None:
            raise refuse(n.at("noticeType"), f"1201 (mobile phone) or 1202 (email), got {kind}")
        value = n.text("noticeValue", required=True, max_len=254)
        own = (payer.tel if channel is Channel.SMS else payer.email) if payer else ""
        wanted = normalise_address(channel, value)
        if wanted is None:
            raise refuse(n.at("noticeValue"), f"not a {channel.value} address")
        if not own or normalise_address(channel, own) != wanted:
            raise refuse(
                n.at("noticeValue"),
                f"is not the payer's {'phone number' if channel is Channel.SMS else 'email'} "
                "on the bill; a bill is sent only to the addresses it was issued with",
            )
        if delivery is None or not delivery.channels.configured(channel):
            raise GatewayError(
                Result.NOT_SERVED, f"this engine has no {channel.value} channel configured"
            )
        if channel not in channels:
            channels.append(channel)
    if delivery is None:  # an empty noticeList was refused above
        raise GatewayError(Result.NOT_SERVED, "this engine has no delivery")
    queued = await delivery.resend(bill.bill_code, bill.bill_no, channels, f"app:{call.app.app_id}")
    return f"通知已提交发送（{queued}条）"
