"""Stock and reconciliation interfaces: the valid number ranges of an issuing
point, its bill codes, and one business day's totals the HIS reconciles with
(total count and amount, per issuing point, red bills)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ebill.http.gateway.call import Answer, Call
from ebill.http.gateway.fields import Reader, refuse
from ebill.http.gateway.lookup import BILL_NAMES
from engine.model import BUS_TYPES
from engine.operator import Operator
from engine.statuses import SegmentStatus
from usecases.stock import movements

__all__ = ["check_day", "valid_bill_codes", "valid_ranges"]

MAX_PAGE = 200


def yuan(fen: int) -> Decimal:
    """Fen as a JSON number of yuan with two decimals (envelope.dumps writes it exactly)."""
    return Decimal(fen).scaleb(-2)


async def _open_segments(call: Call, place: str) -> list[Any]:
    segs = await movements.segments(
        call.services.pool, call.unit_code, place_code=place, office=False
    )
    return [s for s in segs if s.status is SegmentStatus.ENABLED and s.next_no <= s.end_no]


async def valid_ranges(call: Call, r: Reader) -> Answer:
    """getValidBillNo: the unused numbers of the point's enabled e-bill segments
    (billCode and billBatchCode are both the 8-digit bill code here), then its
    blank paper ranges (billCode "paper")."""
    place = call.place(r)
    wanted = r.text("billBatchCode", max_len=50) or r.text("billCode", max_len=50)
    rows: list[dict[str, Any]] = []
    for s in await _open_segments(call, place):
        if not wanted or s.bill_code == wanted:
            rows.append(
                {
                    "billCode": s.bill_code,
                    "billBatchCode": s.bill_code,
                    "billBgnNo": f"{s.next_no:010d}",
                    "billEndNo": str(s.end_no),
                }
            )
    stock = await call.services.paper.stock(Operator(call.unit_code, "", place))
    for p in stock.ranges:
        if p.next_no is not None and (not wanted or p.paper_code == wanted):
            rows.append(
                {
                    "billCode": "paper",
                    "billBatchCode": p.paper_code,
                    "billBgnNo": f"{p.next_no:010d}",
                    "billEndNo": f"{p.end_no:010d}",
                }
            )
    return {"count": len(rows), "billNoList": rows}


async def valid_bill_codes(call: Call, r: Reader) -> Answer:
    """getValidBillBatchCode: the bill codes the point holds numbers of."""
    place = call.place(r)
    codes = sorted({s.bill_code for s in await _open_segments(call, place)})
    return {
        "billCodeList": [
            {"billCode": c, "billBatchCodeList": [{"billBatchCode": c}]} for c in codes
        ]
    }


def _day(r: Reader, name: str = "busDate") -> date:
    text = r.text(name, required=True, max_len=10)
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise refuse(name, f"must be yyyy-MM-dd, got {text!r}")


def check_day(*, red: bool, by_place: bool, by_issue: bool = False) -> Any:
    """checkTotalData (by_place False), checkDataByPlace, checkWriteOffData (red);
    with ``by_issue`` their ...ByIvcDate twins, which count by issue date
    (ivcDate, China time) instead of business date."""
    day_field = "ivcDate" if by_issue else "busDate"

    async def handler(call: Call, r: Reader) -> Answer:
        day = _day(r, day_field)
        place = call.place(r, required=by_place or red)
        bus_type = r.text("busType", max_len=20)
        page_no = r.integer("pageNo", default=1)
        page_size = r.integer("pageSize", default=MAX_PAGE)
        if page_no < 1:
            raise refuse("pageNo", "must be 1 or more")
        if not 1 <= page_size <= MAX_PAGE:
            raise refuse("pageSize", f"1 to {MAX_PAGE}")
        if not place and call.app.places:
            # An app bound to some points reconciles those only, one at a time.
            raise refuse("placeCode", "is required for an app bound to issuing points")
        totals = await call.services.gateway.day_totals(
            unit_code=call.unit_code,
            day=day,
            red=red,
            place_code=place,
            bus_type=bus_type,
            by_issue=by_issue,
        )
        page = totals.runs[(page_no - 1) * page_size : page_no * page_size]
        listing = r.text("isReturnList", max_len=1) != "0"
        return {
            day_field: day.isoformat(),
            "copyNum": len(totals.runs),
            "totalAmt": yuan(sum(run.total_fen for run in page)),
            "totalNum": sum(run.count for run in page),
            "allTotalAmt": yuan(totals.total_fen),
            "allTotalNum": totals.count,
            "billNoList": [
                {
                    "busType": run.bus_type,
                    "placeCode": run.place_code,
                    "billName": BILL_NAMES.get(BUS_TYPES.get(run.bus_type, ""), ""),
                    "billBatchCode": run.bill_code,
                    "bgnNo": f"{run.first_no:010d}",
                    "endNo": f"{run.last_no:010d}",
                    "copyNum": run.count,
                    "totalAmt": yuan(run.total_fen),
                }
                for run in page
            ]
            if listing
            else [],
        }

    return handler
