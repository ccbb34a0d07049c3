"""Bill messages to domain types and back. engine/ and storage/ never see *_pb2."""

from __future__ import annotations

from engine.canonical import rfc3339
from engine.model import (
    BillInput,
    BillStatus,
    ChargeItemInput,
    InsuranceInput,
    IssuedBill,
    ListItemInput,
    MedicalInput,
    PayChannelInput,
    PayerInput,
)
from engine.money import format_fen
from engine.pipeline import Work
from engine.serde import input_to_dict
from engine.statuses import PaperStatus
from protos.ebill.v1 import bill_pb2

__all__ = [
    "PAPER_FROM_PB",
    "bill_from_pb",
    "bill_to_pb",
    "input_to_pb",
    "status_to_pb",
    "work_to_pb",
]

_STATUS = {
    BillStatus.RESERVED: bill_pb2.BILL_STATUS_RESERVED,
    BillStatus.PENDING_COUNTERSIGN: bill_pb2.BILL_STATUS_PENDING_COUNTERSIGN,
    BillStatus.ISSUED: bill_pb2.BILL_STATUS_ISSUED,
    BillStatus.RED_FLUSHED: bill_pb2.BILL_STATUS_RED_FLUSHED,
    BillStatus.REJECTED: bill_pb2.BILL_STATUS_REJECTED,
}

_PAPER = {
    PaperStatus.NONE: bill_pb2.PAPER_STATUS_NONE,
    PaperStatus.PRINTED: bill_pb2.PAPER_STATUS_PRINTED,
    PaperStatus.VOIDED: bill_pb2.PAPER_STATUS_VOIDED,
}
PAPER_FROM_PB = {v: k for k, v in _PAPER.items()}


def status_to_pb(status: BillStatus) -> bill_pb2.BillStatus.ValueType:
    return _STATUS[status]


def bill_from_pb(m: bill_pb2.BillRequest) -> BillInput:
    p, ins, med = m.payer, m.insurance, m.medical
    return BillInput(
        unit_code=m.unit_code,
        bus_no=m.bus_no,
        bus_type=m.bus_type,
        payer=PayerInput(
            p.name, p.payer_type, p.id_card_no, p.card_type, p.card_no, p.tel, p.email
        ),
        bus_time=m.bus_time,
        place_code=m.place_code,
        cashier=m.cashier,
        author=m.author,
        checker=m.checker,
        total_amount=m.total_amount,
        charge_items=tuple(
            ChargeItemInput(
                c.sort_no,
                c.charge_code,
                c.charge_name,
                c.unit,
                c.std,
                c.number,
                c.amt,
                c.self_amt,
                c.remark,
                c.his_code,
            )
            for c in m.charge_items
        ),
        list_items=tuple(
            ListItemInput(
                li.sort_no,
                li.list_code,
                li.list_name,
                li.charge_code,
                li.spec,
                li.unit,
                li.std,
                li.number,
                li.amt,
                li.self_amt,
            )
            for li in m.list_items
        ),
        pay_channels=tuple(PayChannelInput(c.pay_channel_code, c.amount) for c in m.pay_channels),
        insurance=InsuranceInput(
            ins.fund_pay,
            ins.other_fund_pay,
            ins.account_pay,
            ins.own_pay,
            ins.self_pay,
            ins.medical_insurance_id,
            ins.med_care_institution,
        ),
        medical=MedicalInput(
            med.patient_no,
            med.case_number,
            med.sex,
            med.age,
            med.consultation_date,
            med.department,
            med.medical_institution,
        ),
        remark=m.remark,
    )


def input_to_pb(b: BillInput) -> bill_pb2.BillRequest:
    # The message's field names are the domain's: the plain-dict form maps 1:1.
    return bill_pb2.BillRequest(**input_to_dict(b))


def work_to_pb(w: Work) -> bill_pb2.IssuedBill:
    return bill_to_pb(w.issued())


def bill_to_pb(b: IssuedBill) -> bill_pb2.IssuedBill:
    out = bill_pb2.IssuedBill(
        unit_code=b.unit_code,
        bus_no=b.bus_no,
        bill_code=b.bill_code,
        bill_no=b.bill_no,
        check_code=b.check_code,
        status=_STATUS[b.status],
        place_code=b.place_code,
        bus_type=b.bus_type,
        total_amount=format_fen(b.total_fen),
        issued_at=rfc3339(b.issued_at),
        canonical=b.canonical,
        canonical_version=b.canonical_version,
        unit_signature=b.unit_signature,
        fiscal_signature=b.fiscal_signature,
        qr_signature=b.qr_signature,
        paper_code=b.paper_code,
        paper_no=b.paper_no,
        replayed=b.replayed,
        bill_kind=b.bill_kind,
        red_of=b.red_of,
        red_by=b.red_by,
        replaces=b.replaces,
        paper_status=_PAPER[PaperStatus(b.paper_status)],
        origin=b.origin,
        operator=b.operator,
    )
    if b.source is not None:
        out.request.CopyFrom(input_to_pb(b.source))
    return out
