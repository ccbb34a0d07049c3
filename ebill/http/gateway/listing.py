"""Listing interfaces: a unit's bills by business time (getBillByBusDate) or
issue time (getBillByIvcDate), and a payer's bills by card: not converted to
paper (getEBillUnPrintList, getNotPrintList) or converted (getEBillPrintList).
Pages of at most 200, counted (``total``) as the vendor pages them.

The payer's ID card number is shown in clear only to an app holding
bill.read_pii, as ListBills does over gRPC.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ebill.http.gateway.bills import stamp17
from ebill.http.gateway.call import Answer, Call
from ebill.http.gateway.codes import GatewayError, Result
from ebill.http.gateway.fields import Reader, refuse
from ebill.http.gateway.lookup import BILL_NAMES
from ebill.http.gateway.stock import MAX_PAGE, yuan
from engine.masking import mask_id_card
from engine.model import CST, BillStatus, IssuedBill
from usecases.gateway import Listed, PageQuery

__all__ = ["bills_by_time", "payer_bills"]

# The vendor's dataType: 1 e-bill, 2 red e-bill, 3 converted to paper,
# 4 red paper, 5 blank paper.
_DATA_TYPES = {"": Listed.ALL, "1": Listed.NORMAL, "2": Listed.RED, "3": Listed.PRINTED}


# The vendor's stamp and the coarser prefixes HIS systems send, with the
# length of the period each names (a coarse end takes in its whole period).
_FORMS = {
    8: ("%Y%m%d", timedelta(days=1)),
    12: ("%Y%m%d%H%M", timedelta(minutes=1)),
    14: ("%Y%m%d%H%M%S", timedelta(seconds=1)),
    17: ("%Y%m%d%H%M%S", timedelta(milliseconds=1)),
}


def _stamp(r: Reader, name: str, *, end: bool = False) -> datetime:
    """yyyyMMddHHmmssSSS (or a prefix: yyyyMMdd, ...HHmm, ...ss), local time; an
    end is the last instant of the period it names."""
    text = r.text(name, required=True, max_len=17)
    form = _FORMS.get(len(text)) if text.isdigit() else None
    if form is None:
        raise refuse(r.at(name), f"must be yyyyMMddHHmmssSSS, got {text!r}")
    try:
        at = datetime.strptime(text[:14], form[0])
    except ValueError:
        raise refuse(r.at(name), f"not a date and time: {text!r}") from None
    if len(text) == 17:
        at = at.replace(microsecond=int(text[14:]) * 1000)
    return at + form[1] - timedelta(microseconds=1) if end else at


def _range(r: Reader, *, by_issue: bool) -> tuple[datetime, datetime]:
    start, end = _stamp(r, "busBgnDate"), _stamp(r, "busEndDate", end=True)
    if by_issue:  # issue times are instants; the vendor's are China time
        return start.replace(tzinfo=CST), end.replace(tzinfo=CST)
    return start, end


def _page(r: Reader) -> tuple[int, int]:
    page_no = r.integer("pageNo", default=1)
    page_size = r.integer("pageSize", default=MAX_PAGE)
    if page_no < 1:
        raise refuse(r.at("pageNo"), "must be 1 or more")
    if not 1 <= page_size <= MAX_PAGE:
        raise refuse(r.at("pageSize"), f"1 to {MAX_PAGE}")
    return page_no, page_size


def _place(call: Call, r: Reader) -> str:
    """The point to list; an app bound to issuing points lists one of its own
    (its only one when it names none)."""
    place = call.place(r, required=False)
    if not place and call.app.places:
        if len(call.app.places) == 1:
            return next(iter(call.app.places))
        raise refuse(r.at("placeCode"), "is required for an app bound to issuing points")
    return place


def _bus_date(bill: IssuedBill) -> str:
    return bill.source.bus_time if bill.source is not None and bill.source.bus_time else ""


def _key(ref: str) -> tuple[str, str]:
    code, _, no = ref.partition("/")
    return code, no


def _row(bill: IssuedBill, listed: Listed) -> dict[str, Any]:
    printed = listed is Listed.PRINTED
    row: dict[str, Any] = {
        "busDate": _bus_date(bill),
        "busNo": bill.bus_no,
        "busType": bill.bus_type,
        "placeCode": bill.place_code,
        "billName": "纸质票据" if printed else BILL_NAMES.get(bill.bill_kind, bill.bill_kind),
        "billBatchCode": bill.paper_code if printed else bill.bill_code,
        "billNo": bill.paper_no if printed else bill.bill_no,
        "random": "" if printed else bill.check_code,
        "totalAmt": yuan(abs(bill.total_fen)),
        "ivcDateTime": stamp17(bill),
        "dataType": "3" if printed else ("2" if bill.red_of else "1"),
        # 2 (void) is never listed: a bill the platform refused for good is not one.
        "state": "3" if bill.status is BillStatus.RED_FLUSHED else "1",
    }
    related = (bill.bill_code, bill.bill_no) if printed else _key(bill.red_of or bill.red_by)
    if related[0]:
        row["relateBillBatchCode"], row["relateBillNo"] = related
    return row


def bills_by_time(*, by_issue: bool) -> Any:
    """getBillByBusDate and getBillByIvcDate."""

    async def handler(call: Call, r: Reader) -> Answer:
        start, end = _range(r, by_issue=by_issue)
        page_no, page_size = _page(r)
        place = _place(call, r)
        data_type = r.text("dataType", max_len=1)
        if data_type == "4":
            # The engine prints no red paper bill (a red-flushed bill's paper is voided).
            return {"total": 0, "pageNo": page_no, "billList": []}
        if data_type == "5":
            raise GatewayError(
                Result.NOT_SERVED,
                "dataType 5: blank paper numbers are not bills; invalidBlankBillNo voids them "
                "and getValidBillNo lists those left",
            )
        listed = _DATA_TYPES.get(data_type)
        if listed is None:
            raise refuse(r.at("dataType"), f"1 to 5, got {data_type}")
        total, bills = await call.services.gateway.bill_page(
            PageQuery(
                unit_code=call.unit_code,
                start=start,
                end=end,
                by_issue=by_issue,
                listed=listed,
                place_code=place,
                limit=page_size,
                offset=(page_no - 1) * page_size,
            )
        )
        return {"total": total, "pageNo": page_no, "billList": [_row(b, listed) for b in bills]}

    return handler


def payer_bills(listed: Listed, *, card_required: bool) -> Any:
    """getEBillUnPrintList (not converted to paper), getNotPrintList (the same:
    this engine prints no e-bill pictures, so "not printed" is "not on paper"),
    getEBillPrintList (converted to paper, with the paper's number)."""

    async def handler(call: Call, r: Reader) -> Answer:
        start, end = _range(r, by_issue=False)
        page_no, page_size = _page(r)
        place = _place(call, r)
        # The engine finds a payer by card number (its keyed digest); the card
        # type is the HIS's own code and is read, not matched.
        r.text("cardType", required=card_required, max_len=10)
        card_no = r.text("cardNo", required=card_required, max_len=50)
        id_card_no = r.text("idCardNo", max_len=20)
        r.text("patientId", max_len=50)
        if not card_no and not id_card_no and listed is not Listed.PRINTED:
            raise refuse(r.at("cardNo"), "cardNo or idCardNo is required to find the payer")
        total, bills = await call.services.gateway.bill_page(
            PageQuery(
                unit_code=call.unit_code,
                start=start,
                end=end,
                listed=listed,
                place_code=place,
                bus_type=r.text("busType", max_len=20),
                card_no=card_no,
                id_card_no=id_card_no,
                limit=page_size,
                offset=(page_no - 1) * page_size,
            )
        )
        clear = "bill.read_pii" in {str(p) for p in call.app.permissions}
        rows: list[dict[str, Any]] = []
        for b in bills:
            if listed is Listed.PRINTED:
                rows.append(
                    {
                        "busDate": _bus_date(b),
                        "placeCode": b.place_code,
                        "billName": BILL_NAMES.get(b.bill_kind, b.bill_kind),
                        "billBatchCode": b.bill_code,
                        "billNo": b.bill_no,
                        "relatedBillBatchCode": b.paper_code,
                        "relatedBillNo": b.paper_no,
                        "ivcDateTime": stamp17(b),
                    }
                )
                continue
            src = b.source
            id_card = src.payer.id_card_no if src is not None else ""
            rows.append(
                {
                    "busDate": _bus_date(b),
                    "busNo": b.bus_no,
                    "billName": BILL_NAMES.get(b.bill_kind, b.bill_kind),
                    "billBatchCode": b.bill_code,
                    "billNo": b.bill_no,
                    "random": b.check_code,
                    "totalAmt": yuan(b.total_fen),
                    "payer": src.payer.name if src is not None else "",
                    "sex": src.medical.sex if src is not None else "",
                    "idCardNo": id_card if clear else mask_id_card(id_card),
                    "ivcDateTime": stamp17(b),
                    "listFlag": "1" if src is not None and src.list_items else "0",
                    "remark": src.remark if src is not None else "",
                }
            )
        return {"total": total, "pageNo": page_no, "billList": rows}

    return handler
