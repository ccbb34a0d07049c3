"""A vendor issuance request (``invoiceEBillOutpatient`` and its siblings) as
the engine's BillRequest, field by field, and an issued bill as the vendor's
answer.

Fields the engine's bill has no place for (alipayCode, weChatOrderNo, ICD,
otherInfo...) are accepted and not carried; docs/gateway.md lists them. The
unit is the app's, never the request's.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import segno

from ebill.http.gateway.fields import Reader, refuse
from engine.model import CST, BillRecord
from engine.money import format_fen
from protos.ebill.v1 import bill_pb2

__all__ = ["bill_request", "issued_answer", "qr_png", "stamp17"]

# busType values each issuing interface takes (the vendor's appendix 5).
BUS_TYPES: Mapping[str, frozenset[str]] = {
    "outpatient": frozenset({"02", "03"}),
    "inpatient": frozenset({"01"}),
    "registration": frozenset({"06"}),
    "checkup": frozenset({"05"}),
    "common": frozenset({"09", "10", "11"}),
    "deposit": frozenset({"07"}),
}
DEFAULT_BUS_TYPE = {
    "outpatient": "02",
    "inpatient": "01",
    "registration": "06",
    "checkup": "05",
    "deposit": "07",
}
_NON_MEDICAL = {"common", "deposit"}
_ZERO = ("", "0", "0.0", "0.00")


def bill_request(r: Reader, *, unit_code: str, kind: str) -> bill_pb2.BillRequest:
    """The engine's request for one vendor bill. Shape errors are raised with the
    vendor's paths; the engine's validation checks the rest (and its refusals
    are renamed by fields.vendor_error)."""
    bus_type = r.text("busType", max_len=20) or DEFAULT_BUS_TYPE.get(kind, "")
    if not bus_type:
        raise refuse(r.at("busType"), "is required")
    if bus_type not in BUS_TYPES[kind]:
        raise refuse(
            r.at("busType"),
            f"{bus_type} is not issued by this interface (it takes {sorted(BUS_TYPES[kind])})",
        )
    req = bill_pb2.BillRequest(
        unit_code=unit_code,
        bus_no=r.text("busNo", required=True, max_len=50),
        bus_type=bus_type,
        payer=bill_pb2.Payer(
            name=r.text("payer", required=True, max_len=100),
            payer_type=r.text("payerType", max_len=1) or "1",
            id_card_no=r.text("idCardNo", max_len=20),
            card_type=r.text("cardType", max_len=20),
            card_no=r.text("cardNo", max_len=50),
            tel=r.text("tel", max_len=20),
            email=r.text("email", max_len=254),
        ),
        bus_time=r.text("busDateTime", required=True, max_len=17),
        place_code=r.text("placeCode", required=True, max_len=50),
        cashier=r.text("payee", required=True, max_len=50),
        author=r.text("author", required=True, max_len=100),
        checker=r.text("checker", max_len=100),
        total_amount=r.amount("totalAmt", required=True),
        remark=r.text("remark", max_len=200),
    )
    for i, c in enumerate(r.objects("chargeDetail", required=True)):
        req.charge_items.append(
            bill_pb2.ChargeItem(
                sort_no=c.integer("sortNo", default=i + 1),
                charge_code=c.text("chargeCode", required=True, max_len=50),
                charge_name=c.text("chargeName", required=True, max_len=100),
                unit=c.text("unit", max_len=20),
                std=c.quantity("std", required=True),
                number=c.quantity("number", required=True),
                amt=c.amount("amt", required=True),
                self_amt=c.amount("selfAmt"),
                remark=c.text("remark", max_len=200),
            )
        )
    for i, li in enumerate(r.objects("listDetail")):
        req.list_items.append(
            bill_pb2.ListItem(
                sort_no=li.integer("sortNo", default=i + 1),
                list_code=li.text("code", max_len=50) or li.text("listDetailNo", max_len=60),
                list_name=li.text("name", required=True, max_len=100),
                charge_code=li.text("chargeCode", max_len=50),
                spec=li.text("specification", max_len=50),
                unit=li.text("unit", max_len=20),
                std=li.quantity("std", required=True),
                number=li.quantity("number", required=True),
                amt=li.amount("amt", required=True),
                self_amt=li.amount("selfAmt"),
            )
        )
    for p in r.objects("payChannelDetail", required=True):
        req.pay_channels.append(
            bill_pb2.PayChannel(
                pay_channel_code=p.text("payChannelCode", required=True, max_len=10),
                amount=p.amount("payChannelValue", required=True),
            )
        )
    if kind not in _NON_MEDICAL:
        _medical(r, req)
    return req


def _medical(r: Reader, req: bill_pb2.BillRequest) -> None:
    # The vendor sends every split member, 0 when there is none; the engine's
    # split is present only for an insured charge (its members then add up to
    # the total: fund + other fund + account + the person's cash payment).
    split = {
        "fund_pay": r.amount("fundPay"),
        "other_fund_pay": r.amount("otherfundPay"),
        "account_pay": r.amount("accountPay"),
        "own_pay": r.amount("selfCashPay"),
        "self_pay": r.amount("selfPayAmt"),
    }
    insured_id = r.text("medicalInsuranceID", max_len=60)
    funded = any(split[k] not in _ZERO for k in ("fund_pay", "other_fund_pay", "account_pay"))
    if funded or insured_id:
        req.insurance.CopyFrom(
            bill_pb2.InsuranceSplit(
                **split,
                medical_insurance_id=insured_id,
                med_care_institution=r.text("medCareInstitution", max_len=60),
            )
        )
    # v3.2 names the department patientCategory; v3.1 and earlier category.
    department = r.text("patientCategory", max_len=60)
    if not department and "patientCategoryCode" not in r.obj:
        department = r.text("category", max_len=60)
    medical = bill_pb2.Medical(
        patient_no=r.text("patientNo", max_len=50),
        case_number=r.text("caseNumber", max_len=50),
        sex=r.text("sex", max_len=2),
        age=r.text("age", max_len=10),
        consultation_date=r.text("consultationDate", max_len=10),
        department=department,
        medical_institution=r.text("medicalInstitution", max_len=100),
    )
    if medical.ByteSize():
        req.medical.CopyFrom(medical)


def stamp17(bill: BillRecord) -> str:
    """The vendor's yyyyMMddHHmmssSSS of the bill's issue time, China time."""
    at = bill.issued_at.astimezone(CST)
    return at.strftime("%Y%m%d%H%M%S") + f"{at.microsecond // 1000:03d}"


def qr_png(bill: BillRecord) -> str:
    """The bill's QR code, PNG in base64 (billQRCode): code, number, check code,
    issue date and amount, the fields a verification page asks for."""
    text = ",".join(
        (
            "01",
            bill.bill_code,
            bill.bill_no,
            bill.check_code,
            bill.issued_at.astimezone(CST).strftime("%Y%m%d"),
            format_fen(bill.total_fen),
        )
    )
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="png", scale=3, border=2)
    return base64.b64encode(out.getvalue()).decode("ascii")


def issued_answer(bill: BillRecord, picture_url: str) -> dict[str, str]:
    """B-1 of the issuing interfaces."""
    return {
        "billBatchCode": bill.bill_code,
        "billNo": bill.bill_no,
        "random": bill.check_code,
        "createTime": stamp17(bill),
        "billQRCode": qr_png(bill),
        "pictureUrl": picture_url,
        "pictureNetUrl": picture_url,
    }
