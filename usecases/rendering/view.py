"""What a rendered bill shows, as plain values the templates print: built from the
canonical bytes (what was signed is what is shown), the stored bill's life (red
or red-flushed) and the names of the codes. Pure: no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.capitals import capitals
from engine.model import CST, IssuedBill
from engine.money import format_fen
from engine.qr import QrPayload, facts_of
from engine.sm2 import VerifyingKey, sm3
from engine.verification import mask_id, mask_name, mask_phone

__all__ = ["BillView", "Names", "Row", "key_fingerprint", "view_of"]

PAY_CHANNELS = {
    "01": "POS刷卡",
    "02": "现金",
    "03": "转账",
    "04": "支付宝",
    "05": "微信",
    "06": "支票",
}
INSURANCE = (
    ("fund_pay", "医保统筹基金支付"),
    ("other_fund_pay", "其他医保支付"),
    ("account_pay", "个人账户支付"),
    ("own_pay", "个人自付"),
    ("self_pay", "个人自费"),
)


@dataclass(frozen=True, slots=True)
class Names:
    """Names of the codes a bill carries (storage.bill_names)."""

    unit_name: str = ""
    bill_name: str = ""
    pay_channels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Row:
    """One printed line: its cells as text."""

    cells: tuple[str, ...]


def key_fingerprint(key: VerifyingKey | None) -> str:
    """A short, stable name of a public key printed in a seal: SM3 of the point,
    16 hex digits in groups of four."""
    if key is None:
        return "----"
    h = sm3(key.point).hex()[:16].upper()
    return " ".join(h[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True, slots=True)
class BillView:
    bill_name: str
    unit_name: str
    unit_code: str
    bill_code: str
    bill_no: str
    check_code: str
    issue_date: str
    issue_time: str
    payer_name: str
    payer_id: str
    payer_tel: str
    bus_no: str
    patient_no: str
    department: str
    total: str
    total_capitals: str
    charge_items: tuple[Row, ...]
    list_items: tuple[Row, ...]
    pay_channels: tuple[Row, ...]
    insurance: tuple[Row, ...]
    insurance_id: str
    remark: str
    cashier: str
    author: str
    checker: str
    # Red bill: the bill it cancels ("code/no"); red-flushed: the red bill.
    red: bool
    red_of: str
    red_by: str
    status: str
    # Seals: who signed, named by key fingerprint.
    unit_key: str
    fiscal_key: str
    countersigned: bool
    qr_text: str
    masked: bool


def _yuan(text: Any) -> str:
    return str(text)


def _price(text: Any) -> str:
    # "35.6000" -> "35.60", "1.2345" stays: prices keep at least two decimals.
    s = str(text)
    if "." not in s:
        return s
    whole, frac = s.split(".")
    return whole + "." + (frac.rstrip("0") or "").ljust(2, "0")


def _qty(text: Any) -> str:
    # "2.0000" -> "2", "18.5000" -> "18.5": a person reads quantities without padding.
    s = str(text)
    return s.rstrip("0").rstrip(".") if "." in s else s


def view_of(
    bill: IssuedBill,
    names: Names,
    *,
    unit_key: VerifyingKey | None,
    fiscal_key: VerifyingKey | None,
    masked: bool = False,
    qr_base_url: str = "",
) -> BillView:
    """The view of ``bill``; ``masked`` hides personal data (public pages)."""
    doc: dict[str, Any] = json.loads(bill.canonical)
    payer = doc.get("payer") or {}
    medical = doc.get("medical") or {}
    total_fen = facts_of(doc).total_fen
    issued = datetime.fromisoformat(doc["issued_at"].replace("Z", "+00:00")).astimezone(CST)
    # The standard codes by their Chinese names (the catalogue may hold English ones).
    channel_names = {**dict(names.pay_channels), **PAY_CHANNELS}
    ins = doc.get("insurance") or {}
    red_of = doc.get("red_of") or {}
    qr = QrPayload(facts_of(doc), bill.qr_signature).text
    if qr_base_url:
        qr = f"{qr_base_url.rstrip('/')}/verify?qr={qr}"
    name, pid, tel = payer.get("name", ""), payer.get("id_card_no", ""), payer.get("tel", "")
    return BillView(
        bill_name=names.bill_name or "财政电子票据",
        unit_name=names.unit_name or doc["unit_code"],
        unit_code=doc["unit_code"],
        bill_code=doc["bill_code"],
        bill_no=doc["bill_no"],
        check_code=doc["check_code"],
        issue_date=issued.strftime("%Y-%m-%d"),
        issue_time=issued.strftime("%H:%M:%S"),
        payer_name=mask_name(name) if masked else name,
        payer_id=mask_id(pid) if masked else pid,
        payer_tel=mask_phone(tel) if masked else tel,
        bus_no=doc.get("bus_no", ""),
        patient_no=mask_id(medical.get("patient_no", ""))
        if masked
        else medical.get("patient_no", ""),
        department=medical.get("department", ""),
        total=format_fen(total_fen),
        total_capitals=capitals(total_fen),
        charge_items=tuple(
            Row(
                (
                    c["charge_code"],
                    c["charge_name"],
                    c["unit"],
                    _qty(c["number"]),
                    _price(c["std"]),
                    _yuan(c["amt"]),
                    c.get("remark", ""),
                )
            )
            for c in doc.get("charge_items", [])
        ),
        list_items=tuple(
            Row(
                (
                    li["list_code"],
                    li["list_name"],
                    li["spec"],
                    li["unit"],
                    _qty(li["number"]),
                    _price(li["std"]),
                    _yuan(li["amt"]),
                )
            )
            for li in doc.get("list_items", [])
        ),
        pay_channels=tuple(
            Row((channel_names.get(p["pay_channel_code"], p["pay_channel_code"]), p["amount"]))
            for p in doc.get("pay_channels", [])
        ),
        insurance=tuple(
            Row((label, ins[k])) for k, label in INSURANCE if ins.get(k) not in (None, "", "0.00")
        ),
        insurance_id=(mask_id if masked else str)(ins.get("medical_insurance_id", "")),
        remark=doc.get("remark", ""),
        cashier=doc.get("cashier", ""),
        author=doc.get("author", ""),
        checker=doc.get("checker", ""),
        red=bool(red_of),
        red_of=f"{red_of['bill_code']}/{red_of['bill_no']}" if red_of else "",
        red_by=bill.red_by,
        status=bill.status.value,
        unit_key=key_fingerprint(unit_key),
        fiscal_key=key_fingerprint(fiscal_key),
        countersigned=bool(bill.fiscal_signature),
        qr_text=qr,
        masked=masked,
    )
