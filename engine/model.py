"""Value types of the domain. Frozen, wire-agnostic; the edges convert to and from them.

``*Input`` types hold what a caller sent, as text, exactly as received. Validation
turns an input into a :class:`ValidBill` whose amounts are integer fen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from operator import attrgetter
from typing import Any, TypeVar

from engine.statuses import PaperStatus

__all__ = [
    "BUS_TYPES",
    "CST",
    "RECORD_FIELDS",
    "BillInput",
    "BillRecord",
    "BillStatus",
    "Catalog",
    "ChargeItem",
    "ChargeItemInput",
    "InsuranceInput",
    "InsuranceSplit",
    "IssuedBill",
    "ListItem",
    "ListItemInput",
    "MedicalInput",
    "PayChannel",
    "PayChannelInput",
    "PayerInput",
    "Reservation",
    "UnitCatalog",
    "ValidBill",
    "compact_pickle",
    "record_values",
]

# The hospitals' local time, China Standard Time: bus_time, dates on bills and
# the days of periods are in it.
CST = timezone(timedelta(hours=8))

# Business types (业务类型) and the bill kind each is issued on.
BUS_TYPES: Mapping[str, str] = {
    "01": "inpatient",
    "02": "outpatient",
    "03": "emergency",
    "05": "checkup",
    "06": "registration",
    "07": "deposit",
    "09": "current_account",
    "10": "donation",
    "11": "non_tax",
}


T = TypeVar("T")


def compact_pickle(cls: type[T]) -> type[T]:
    """Pickle a frozen slots dataclass as its constructor arguments.

    These values cross a process boundary at every pipeline hop; the default
    protocol for slots classes (copyreg state dicts) costs 5x more per bill.
    """
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    def __reduce__(self: T) -> tuple[type[T], tuple[object, ...]]:
        return cls, tuple(getattr(self, n) for n in names)

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


class BillStatus(StrEnum):
    """Life of a bill row. See engine.state for the allowed transitions."""

    RESERVED = "reserved"
    PENDING_COUNTERSIGN = "pending_countersign"
    ISSUED = "issued"
    RED_FLUSHED = "red_flushed"
    # The fiscal platform refused it for good (a red bill; its original is issued again).
    REJECTED = "rejected"


@compact_pickle
@dataclass(frozen=True, slots=True)
class PayerInput:
    name: str = ""
    payer_type: str = ""
    id_card_no: str = ""
    card_type: str = ""
    card_no: str = ""
    tel: str = ""
    email: str = ""


@compact_pickle
@dataclass(frozen=True, slots=True)
class ChargeItemInput:
    sort_no: int = 0
    charge_code: str = ""
    charge_name: str = ""
    unit: str = ""
    std: str = ""
    number: str = ""
    amt: str = ""
    self_amt: str = ""
    remark: str = ""


@compact_pickle
@dataclass(frozen=True, slots=True)
class ListItemInput:
    sort_no: int = 0
    list_code: str = ""
    list_name: str = ""
    charge_code: str = ""
    spec: str = ""
    unit: str = ""
    std: str = ""
    number: str = ""
    amt: str = ""
    self_amt: str = ""


@compact_pickle
@dataclass(frozen=True, slots=True)
class PayChannelInput:
    pay_channel_code: str = ""
    amount: str = ""


@compact_pickle
@dataclass(frozen=True, slots=True)
class InsuranceInput:
    fund_pay: str = ""
    other_fund_pay: str = ""
    account_pay: str = ""
    own_pay: str = ""
    self_pay: str = ""
    medical_insurance_id: str = ""
    med_care_institution: str = ""


@compact_pickle
@dataclass(frozen=True, slots=True)
class MedicalInput:
    patient_no: str = ""
    case_number: str = ""
    sex: str = ""
    age: str = ""
    consultation_date: str = ""
    department: str = ""
    medical_institution: str = ""


@compact_pickle
@dataclass(frozen=True, slots=True)
class BillInput:
    """A settled charge as the HIS sent it."""

    unit_code: str = ""
    bus_no: str = ""
    bus_type: str = ""
    payer: PayerInput = field(default_factory=PayerInput)
    bus_time: str = ""
    place_code: str = ""
    cashier: str = ""
    author: str = ""
    checker: str = ""
    total_amount: str = ""
    charge_items: tuple[ChargeItemInput, ...] = ()
    list_items: tuple[ListItemInput, ...] = ()
    pay_channels: tuple[PayChannelInput, ...] = ()
    insurance: InsuranceInput = field(default_factory=InsuranceInput)
    medical: MedicalInput = field(default_factory=MedicalInput)
    remark: str = ""


@compact_pickle
@dataclass(frozen=True, slots=True)
class ChargeItem:
    sort_no: int
    charge_code: str
    charge_name: str
    unit: str
    std: Decimal
    number: Decimal
    amt_fen: int
    self_amt_fen: int
    remark: str


@compact_pickle
@dataclass(frozen=True, slots=True)
class ListItem:
    sort_no: int
    list_code: str
    list_name: str
    charge_code: str
    spec: str
    unit: str
    std: Decimal
    number: Decimal
    amt_fen: int
    self_amt_fen: int


@compact_pickle
@dataclass(frozen=True, slots=True)
class PayChannel:
    pay_channel_code: str
    amount_fen: int


@compact_pickle
@dataclass(frozen=True, slots=True)
class InsuranceSplit:
    fund_pay_fen: int
    other_fund_pay_fen: int
    account_pay_fen: int
    own_pay_fen: int
    self_pay_fen: int
    medical_insurance_id: str
    med_care_institution: str


@compact_pickle
@dataclass(frozen=True, slots=True)
class ValidBill:
    """A bill request that passed validation: exact amounts, known codes."""

    source: BillInput
    bill_code: str
    bill_kind: str
    bus_time: datetime
    total_fen: int
    charge_items: tuple[ChargeItem, ...]
    list_items: tuple[ListItem, ...]
    pay_channels: tuple[PayChannel, ...]
    insurance: InsuranceSplit | None

    @property
    def unit_code(self) -> str:
        return self.source.unit_code

    @property
    def bus_no(self) -> str:
        return self.source.bus_no

    @property
    def place_code(self) -> str:
        return self.source.place_code


@compact_pickle
@dataclass(frozen=True, slots=True)
class UnitCatalog:
    """Reference data of one issuing unit that validation checks codes against."""

    unit_code: str
    unit_name: str
    # place_code -> enabled
    issuing_points: Mapping[str, bool]
    # fiscal charge item code -> name
    charge_codes: Mapping[str, str]
    pay_channels: frozenset[str]
    # bus_type -> bill_code used for it
    bill_codes: Mapping[str, str]


@compact_pickle
@dataclass(frozen=True, slots=True)
class Catalog:
    units: Mapping[str, UnitCatalog]


@compact_pickle
@dataclass(frozen=True, slots=True)
class Reservation:
    """A bill number leased for one bill, with its check code and issue time."""

    bill_code: str
    bill_no: str
    check_code: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class BillRecord:
    """The fields of a stored bill that every view of it carries, defined once.

    :class:`engine.pipeline.Work` (a bill on its way through the pipeline) and
    :class:`IssuedBill` (a bill as read back) extend it; storage maps a bills row
    onto these fields by name (storage.bill_rows). The order is the positional
    order of both subclasses' constructors, which compact_pickle and
    :func:`record_values` rely on.
    """

    bill_id: int
    unit_code: str
    bus_no: str
    bus_type: str
    place_code: str
    bill_code: str
    bill_no: str
    check_code: str
    status: BillStatus
    total_fen: int
    issued_at: datetime
    canonical: bytes
    canonical_version: str
    unit_signature: bytes = b""
    fiscal_signature: bytes = b""
    bill_kind: str = ""
    # The platform's signature over the bill's QR facts (engine.qr), given with
    # its countersignature; empty on bills countersigned before it did so.
    qr_signature: bytes = b""
    # Not a column: this answer repeats a bill stored for an earlier request.
    replayed: bool = False


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(BillRecord))
# The BillRecord part of any subclass as one tuple, in constructor order (C speed:
# it runs once per bill at the end of the pipeline).
record_values: Callable[[BillRecord], tuple[Any, ...]] = attrgetter(*RECORD_FIELDS)


@compact_pickle
@dataclass(frozen=True, slots=True)
class IssuedBill(BillRecord):
    """A bill as stored: the archived e-bill and where it is in its life."""

    source: BillInput | None = None
    paper_code: str = ""
    paper_no: str = ""
    # "code/no" of the bill a red bill cancels, of the red bill that cancelled
    # this one, of the bill a refund's remainder replaces.
    red_of: str = ""
    red_by: str = ""
    replaces: str = ""
    paper_status: PaperStatus = PaperStatus.NONE
    origin: str = "engine"
    operator: str = ""
