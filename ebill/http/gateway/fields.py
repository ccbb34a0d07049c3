"""Reading the vendor's business JSON: text, amounts and quantities, with the
path of each value as the caller sent it (``eBillList[3].chargeDetail[0].amt``).

Amounts arrive as JSON numbers (parsed as Decimal by envelope.decode_data, never
float) or as strings. An amount that cannot be written with two fraction digits
without rounding is refused: a rounded amount on a fiscal bill is a wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.errors import FieldError, InvalidArgument

__all__ = ["Reader", "refuse"]

_CENT = Decimal("0.01")


def refuse(path: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {message}", field=path)


class Reader:
    """One JSON object of the request and where it sits in it."""

    def __init__(self, obj: Mapping[str, Any], path: str = "") -> None:
        self.obj = obj
        self.path = path

    def at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def text(self, name: str, *, required: bool = False, max_len: int = 200) -> str:
        value = self.obj.get(name)
        if value is None or value == "":
            if required:
                raise refuse(self.at(name), "is required")
            return ""
        # Codes such as busType or sortNo are sometimes sent as JSON integers.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise refuse(self.at(name), "must be a string")
        text = str(value)
        if len(text) > max_len:
            raise refuse(self.at(name), f"at most {max_len} characters")
        return text

    def amount(self, name: str, *, required: bool = False) -> str:
        """A money value as the engine's decimal text (yuan, at most 2 decimals)."""
        value = self.obj.get(name)
        if value is None or value == "":
            if required:
                raise refuse(self.at(name), "is required")
            return ""
        if isinstance(value, bool):
            raise refuse(self.at(name), "must be a number")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, Decimal):
            if value != value.quantize(_CENT):
                raise refuse(
                    self.at(name),
                    f"at most 2 fraction digits (an amount is not rounded), got {value}",
                )
            return format(value.quantize(_CENT), "f")
        if isinstance(value, str):
            return value.strip()  # the engine's own parser refuses what is not an amount
        raise refuse(self.at(name), "must be a number")

    def quantity(self, name: str, *, required: bool = False) -> str:
        """A unit price or quantity (the engine allows 4 fraction digits)."""
        value = self.obj.get(name)
        if value is None or value == "":
            if required:
                raise refuse(self.at(name), "is required")
            return ""
        if isinstance(value, bool):
            raise refuse(self.at(name), "must be a number")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, str):
            return value.strip()
        raise refuse(self.at(name), "must be a number")

    def integer(self, name: str, *, default: int = 0) -> int:
        value = self.obj.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise refuse(self.at(name), "must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        raise refuse(self.at(name), "must be an integer")

    def objects(self, name: str, *, required: bool = False, most: int = 1000) -> list[Reader]:
        """A list of objects; the vendor sometimes sends a list as a JSON string."""
        value = self.obj.get(name)
        if value is None or value == "" or value == []:
            if required:
                raise refuse(self.at(name), "is required (a list)")
            return []
        if not isinstance(value, list):
            raise refuse(self.at(name), "must be a list of objects")
        if len(value) > most:
            raise refuse(self.at(name), f"at most {most} entries")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise refuse(f"{self.at(name)}[{i}]", "must be an object")
            out.append(Reader(item, f"{self.at(name)}[{i}]"))
        return out


# The engine's field names (engine.validation's paths) to the vendor's, so a
# refusal names the value the HIS sent. Nested engine groups the vendor sends
# flat (payer, insurance, medical) map member by member.
_FLAT: dict[str, dict[str, str]] = {
    "payer": {
        "name": "payer",
        "payer_type": "payerType",
        "id_card_no": "idCardNo",
        "card_type": "cardType",
        "card_no": "cardNo",
        "tel": "tel",
        "email": "email",
    },
    "insurance": {
        "fund_pay": "fundPay",
        "other_fund_pay": "otherfundPay",
        "account_pay": "accountPay",
        "own_pay": "selfCashPay",
        "self_pay": "selfPayAmt",
        "medical_insurance_id": "medicalInsuranceID",
        "med_care_institution": "medCareInstitution",
    },
    "medical": {
        "patient_no": "patientNo",
        "case_number": "caseNumber",
        "sex": "sex",
        "age": "age",
        "consultation_date": "consultationDate",
        "department": "patientCategory",
        "medical_institution": "medicalInstitution",
    },
}
_NAMES = {
    "unit_code": "appid",
    "bus_no": "busNo",
    "bus_type": "busType",
    "bus_time": "busDateTime",
    "place_code": "placeCode",
    "cashier": "payee",
    "total_amount": "totalAmt",
    "charge_items": "chargeDetail",
    "list_items": "listDetail",
    "pay_channels": "payChannelDetail",
    "sort_no": "sortNo",
    "charge_code": "chargeCode",
    "charge_name": "chargeName",
    "self_amt": "selfAmt",
    "list_code": "code",
    "list_name": "name",
    "spec": "specification",
    "pay_channel_code": "payChannelCode",
    "amount": "payChannelValue",
    "insurance": "fundPay/otherfundPay/accountPay/selfCashPay",
    "medical": "patientNo/sex/age/consultationDate/patientCategory",
}


def vendor_path(path: str, prefix: str = "") -> str:
    """``bill.charge_items[2].amt`` -> ``chargeDetail[2].amt`` (under ``prefix``)."""
    parts = path.split(".")
    if parts and (parts[0] == "bill" or parts[0].startswith("bills[")):
        parts = parts[1:]
    out: list[str] = []
    i = 0
    while i < len(parts):
        name, bracket, rest = parts[i].partition("[")
        index = bracket + rest
        if name in _FLAT and i + 1 < len(parts):
            member = parts[i + 1]
            out.append(_FLAT[name].get(member, member))
            i += 2
            continue
        out.append(_NAMES.get(name, name) + index)
        i += 1
    tail = ".".join(out)
    return f"{prefix}.{tail}" if prefix and tail else (prefix or tail)


def vendor_error(exc: InvalidArgument, prefix: str = "") -> InvalidArgument:
    """The engine's refusal reworded with the vendor's field names."""
    violations = exc.field_errors
    if not violations:
        return exc
    renamed = tuple(FieldError(vendor_path(v.field, prefix), v.message) for v in violations)
    return InvalidArgument.from_errors(list(renamed))
