"""A validated bill reduced to what the reserve step needs, in plain values.

Validation and reservation run in different processes; this is what crosses
between them. Plain tuples, dicts and strings pickle several times faster than
the nested value types, and the reserve step then only adds the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.canonical import document, render
from engine.model import Reservation, ValidBill, compact_pickle
from engine.serde import input_to_dict

__all__ = ["Prepared", "prepare"]


@compact_pickle
@dataclass(frozen=True, slots=True)
class Prepared:
    unit_code: str
    bus_no: str
    bus_type: str
    bill_kind: str
    place_code: str
    bill_code: str
    total_fen: int
    bus_time: datetime
    payer_name: str
    payer_id_card_no: str
    payer_card_no: str
    payer_tel: str
    cashier: str
    # The canonical document without its reservation members.
    document: dict[str, Any]
    # The request as received, stored as JSONB.
    request: dict[str, Any]
    # (sort_no, charge_code, charge_name, amt_fen, self_amt_fen)
    charge_rows: tuple[tuple[int, str, str, int, int], ...]
    # (pay_channel_code, amount_fen)
    channel_rows: tuple[tuple[str, int], ...]
    # Lifecycle: the bill this one cancels (red bill) or re-issues the remainder
    # of (refund), by bill id; whether the original's paper is voided with it;
    # the operation and the operator, recorded as a bill event.
    red_of: int = 0
    replaces: int = 0
    void_paper: bool = False
    op: str = "issue"
    operator: str = ""

    def canonical(self, res: Reservation) -> bytes:
        return render(self.document, res)


def prepare(bill: ValidBill) -> Prepared:
    src = bill.source
    return Prepared(
        unit_code=src.unit_code,
        bus_no=src.bus_no,
        bus_type=src.bus_type,
        bill_kind=bill.bill_kind,
        place_code=src.place_code,
        bill_code=bill.bill_code,
        total_fen=bill.total_fen,
        bus_time=bill.bus_time,
        payer_name=src.payer.name,
        payer_id_card_no=src.payer.id_card_no,
        payer_card_no=src.payer.card_no,
        payer_tel=src.payer.tel,
        cashier=src.cashier,
        document=document(bill),
        request=input_to_dict(src),
        charge_rows=tuple(
            (c.sort_no, c.charge_code, c.charge_name, c.amt_fen, c.self_amt_fen)
            for c in bill.charge_items
        ),
        channel_rows=tuple((p.pay_channel_code, p.amount_fen) for p in bill.pay_channels),
    )
