"""A demo bill as a HIS sends it to the vendor gateway, and the vendor's signed
envelope: what the gateway benchmarks send. No grpc here, so the Locust process
(gevent) can import it without a gRPC library in it."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

from usecases import demo

__all__ = ["envelope", "result_of", "vendor_bill"]


def vendor_bill(n: int, prefix: str) -> dict[str, object]:
    """Demo bill ``n`` with the vendor's field names (invoiceEBillOutpatient)."""
    b = demo.demo_bill(n, prefix=prefix)
    return {
        "busNo": b.bus_no, "busType": "02", "payer": b.payer.name, "busDateTime": b.bus_time,
        "placeCode": b.place_code, "payee": b.cashier, "author": b.author,
        "totalAmt": b.total_amount, "payerType": b.payer.payer_type, "cardType": b.payer.card_type,
        "cardNo": b.payer.card_no, "tel": b.payer.tel, "idCardNo": b.payer.id_card_no,
        "fundPay": b.insurance.fund_pay, "otherfundPay": b.insurance.other_fund_pay,
        "accountPay": b.insurance.account_pay, "selfCashPay": b.insurance.own_pay,
        "selfPayAmt": b.insurance.self_pay, "medicalInsuranceID": b.insurance.medical_insurance_id,
        "patientNo": b.medical.patient_no, "sex": b.medical.sex, "age": b.medical.age,
        "chargeDetail": [
            {"sortNo": c.sort_no, "chargeCode": c.charge_code, "chargeName": c.charge_name,
             "unit": c.unit, "std": c.std, "number": c.number, "amt": c.amt}
            for c in b.charge_items
        ],
        "listDetail": [
            {"sortNo": li.sort_no, "code": li.list_code, "name": li.list_name,
             "chargeCode": li.charge_code, "specification": li.spec, "unit": li.unit,
             "std": li.std, "number": li.number, "amt": li.amt}
            for li in b.list_items
        ],
        "payChannelDetail": [
            {"payChannelCode": p.pay_channel_code, "payChannelValue": p.amount}
            for p in b.pay_channels
        ],
    }  # fmt: skip


def envelope(appid: str, key: str, business: dict[str, object]) -> bytes:
    """The vendor's request: base64 business JSON, a fresh noise, the uppercase
    MD5 of the fixed-order string with the app's key (as the HIS client signs)."""
    data = base64.b64encode(json.dumps(business, ensure_ascii=False).encode()).decode()
    noise = uuid.uuid4().hex
    text = f"appid={appid}&data={data}&noise={noise}&key={key}&version=1.0"
    sign = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest().upper()
    body = {"appid": appid, "data": data, "noise": noise, "version": "1.0", "sign": sign}
    return json.dumps(body).encode()


def result_of(answer: bytes) -> str:
    """The result code inside an answer envelope (S0000 on success)."""
    inner = json.loads(base64.b64decode(json.loads(answer)["data"]))
    return str(inner["result"])
