"""Validation of bill requests: every rule, every field path, no I/O.

``validate`` collects every problem it can find rather than stopping at the first,
so a cashier fixes a request in one round trip. Field paths are relative to the
bill (``charge_items[2].amt``); the edge prefixes them with the request path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TypeVar

from engine.catalog import map_item, usable
from engine.errors import FieldError, InvalidArgument
from engine.model import (
    BUS_TYPES,
    BillInput,
    Catalog,
    ChargeItem,
    ChargeItemInput,
    InsuranceSplit,
    ListItem,
    PayChannel,
    UnitCatalog,
    ValidBill,
)
from engine.money import format_fen, parse_fen, parse_quantity

__all__ = [
    "BUS_NO",
    "EMAIL",
    "ID_CARD",
    "MAX_CHARGE_ITEMS",
    "MAX_LIST_ITEMS",
    "MAX_PAY_CHANNELS",
    "NON_MEDICAL_KINDS",
    "QUOTE_LIMIT",
    "SEXES",
    "TEL",
    "FieldChecks",
    "check",
    "parse_stamp",
    "quote",
    "validate",
]

MAX_CHARGE_ITEMS = 200
MAX_LIST_ITEMS = 2000
MAX_PAY_CHANNELS = 10

_BUS_NO = re.compile(r"^[A-Za-z0-9_\-]{1,50}$")
_BUS_TIME = re.compile(r"^[0-9]{17}$")
_TEL = re.compile(r"^\+?[0-9\-]{5,20}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,100}\.[^@\s]+$")
_ID_CARD = re.compile(r"^[0-9]{17}[0-9Xx]$|^[0-9]{15}$")
_CODE = re.compile(r"^[A-Za-z0-9]{1,20}$")
# Identifiers a HIS or an insurer assigns (patient, case, list item, insurance
# settlement numbers): letters, digits and the separators seen in practice.
_IDENT = re.compile(r"^[A-Za-z0-9_\-./]{1,50}$")
# C0 (NUL, BEL, ESC, TAB, LF ... ), DEL and C1: never part of a bill's text. They are
# refused at validation so that a bad request fails alone, with its field path,
# instead of in PostgreSQL for a whole micro-batch, or inside a signed document.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Sex as hospitals send it: GB/T 2261.1 codes (0 unknown, 1 male, 2 female,
# 9 unspecified) or the Chinese words the demo and most HIS use.
SEXES = frozenset({"0", "1", "2", "9", "男", "女"})
# Age as hospitals send it: years ("35", "35岁", "0.5"), or months, weeks, days or
# hours for infants ("3月", "3个月", "2周", "15天", "6小时"), or years and months ("1岁3月").
_AGE = re.compile(
    r"^(?P<years>[0-9]{1,3})(?:\.[0-9]{1,2})?(?:岁|[Yy])?$"
    r"|^(?P<y2>[0-9]{1,3})岁[0-9]{1,2}(?:个月|月)$"
    r"|^[0-9]{1,2}(?:个月|月|[Mm])$|^[0-9]{1,3}(?:周|[Ww])$"
    r"|^[0-9]{1,3}(?:天|日|[Dd])$|^[0-9]{1,2}(?:小时|[Hh])$"
)
MAX_AGE_YEARS = 150
# Consultation date: yyyyMMdd or yyyy-MM-dd (both occur in HIS interfaces).
_DATE = re.compile(r"^([0-9]{4})-?([0-9]{2})-?([0-9]{2})$")
# Amounts and quantities are at most 14 + 1 + 4 characters; anything longer is
# refused before parsing so that the message never quotes a long value.
_MAX_NUMBER_LEN = 24
# How much of an offending value a message quotes: enough to recognise it, never so
# much that a message outgrows gRPC trailing metadata (issue #11 item 5).
QUOTE_LIMIT = 32

T = TypeVar("T")


def quote(value: str, limit: int = QUOTE_LIMIT) -> str:
    """``value`` quoted for an error message: whole when short, else its first
    ``limit`` characters and its length, e.g. ``'AAAA…'(10000 chars)``."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}…({len(value)} chars)"


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(FieldError(path, message))

    def parse(self, path: str, parser: Callable[[str], T], text: str, default: T) -> T:
        if len(text) > _MAX_NUMBER_LEN:
            self.add(
                path, f"must be a number of at most {_MAX_NUMBER_LEN} characters, got {quote(text)}"
            )
            return default
        if not self.clean(path, text):
            return default
        try:
            return parser(text)
        except ValueError as exc:
            self.add(path, str(exc))
            return default

    def clean(self, path: str, value: str) -> bool:
        """False (and an error) when ``value`` holds a control character."""
        m = _CONTROL.search(value)
        if m is None:
            return True
        self.add(
            path,
            f"must not contain control characters, found U+{ord(m.group()):04X} "
            f"at position {m.start()}",
        )
        return False

    def text(
        self,
        path: str,
        value: str,
        *,
        max_len: int,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        form: str = "",
    ) -> bool:
        """Bound, clean and (optionally) shaped text; True when it passed."""
        if len(value) > max_len:
            self.add(path, f"must be at most {max_len} characters, got {len(value)}")
        elif not self.clean(path, value):
            pass
        elif required and not value.strip():
            self.add(path, "is required")
        elif pattern is not None and value and not pattern.match(value):
            self.add(path, f"must be {form}, got {quote(value)}")
        else:
            return True
        return False


# The checks of a bill, for the edge to check every other request string alike
# (wire.guard): the same bounds, control-character refusal and quoting.
FieldChecks = _Errors
# Shapes shared with the edge: a serial (bus_no) is the same everywhere, etc.
BUS_NO = _BUS_NO
EMAIL = _EMAIL
ID_CARD = _ID_CARD
TEL = _TEL


def _amount(errs: _Errors, path: str, text: str, *, required: bool = True) -> int:
    if not text.strip():
        if required:
            errs.add(path, "is required")
        return 0
    return errs.parse(path, parse_fen, text, 0)


def _quantity(errs: _Errors, path: str, text: str) -> Decimal:
    if not text.strip():
        errs.add(path, "is required")
        return Decimal(0)
    return errs.parse(path, parse_quantity, text, Decimal(0))


def validate(bill: BillInput, catalog: Catalog) -> ValidBill:
    """Check a request against the rules and the unit's reference data.

    Returns the validated bill with exact amounts, or raises InvalidArgument naming
    the first offending field (all problems are listed in the message count).
    """
    errors = check(bill, catalog)
    if isinstance(errors, list):
        raise InvalidArgument.from_errors(errors)
    return errors


def parse_stamp(text: str) -> datetime:
    """A yyyyMMddHHmmssSSS local time (17 digits, checked by the caller) as a naive
    datetime; ValueError when it is not a real date and time."""
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(microsecond=int(text[14:]) * 1000)


# Bill kinds that are not medical charges.
NON_MEDICAL_KINDS = frozenset({"current_account", "donation", "non_tax"})


def check(bill: BillInput, catalog: Catalog) -> ValidBill | list[FieldError]:
    """Like validate, but returns the list of field errors instead of raising."""
    errs = _Errors()

    unit = catalog.units.get(bill.unit_code)
    if errs.text("unit_code", bill.unit_code, max_len=50, required=True) and unit is None:
        errs.add("unit_code", f"unknown issuing unit {quote(bill.unit_code)}")

    if not _BUS_NO.match(bill.bus_no):
        errs.add("bus_no", "must be 1-50 characters of letters, digits, '_' or '-'")

    bill_code = ""
    if bill.bus_type not in BUS_TYPES:
        errs.add("bus_type", f"unknown business type {quote(bill.bus_type)}")
    elif unit is not None:
        bill_code = unit.bill_codes.get(bill.bus_type, "")
        if not bill_code:
            errs.add("bus_type", f"unit {unit.unit_code} has no bill code for {bill.bus_type}")

    payer = bill.payer
    errs.text("payer.name", payer.name, max_len=100, required=True)
    if payer.payer_type not in ("1", "2"):
        errs.add("payer.payer_type", "must be '1' (individual) or '2' (unit)")
    if payer.id_card_no and not _ID_CARD.match(payer.id_card_no):
        errs.add("payer.id_card_no", "must be a 15 or 18 character resident id number")
    errs.text("payer.card_type", payer.card_type, max_len=20)
    errs.text("payer.card_no", payer.card_no, max_len=50)
    if payer.tel and not _TEL.match(payer.tel):
        errs.add("payer.tel", "must be 5-20 digits")
    if payer.email and len(payer.email) <= 254 and not errs.clean("payer.email", payer.email):
        pass
    elif payer.email and (len(payer.email) > 254 or not _EMAIL.match(payer.email)):
        errs.add("payer.email", "must be an email address of at most 254 characters")

    bus_time = datetime(1970, 1, 1)
    if not _BUS_TIME.match(bill.bus_time):
        errs.add("bus_time", "must be yyyyMMddHHmmssSSS (17 digits)")
    else:
        try:
            bus_time = parse_stamp(bill.bus_time)
        except ValueError:
            errs.add("bus_time", f"is not a real date and time: {bill.bus_time}")

    if errs.text("place_code", bill.place_code, max_len=20, required=True) and unit is not None:
        enabled = unit.issuing_points.get(bill.place_code)
        if enabled is None:
            errs.add("place_code", f"unknown issuing point {quote(bill.place_code)}")
        elif not enabled:
            errs.add("place_code", f"issuing point {quote(bill.place_code)} is disabled")

    errs.text("cashier", bill.cashier, max_len=50, required=True)
    errs.text("author", bill.author, max_len=50, required=True)
    errs.text("checker", bill.checker, max_len=50)
    errs.text("remark", bill.remark, max_len=200)
    _medical(errs, bill)

    before = len(errs.items)
    total = _amount(errs, "total_amount", bill.total_amount)
    if len(errs.items) == before and total == 0:
        errs.add("total_amount", "must be greater than 0")

    charge_items = _charge_items(errs, bill, unit, bus_time.date())
    list_items = _list_items(errs, bill, charge_items)
    pay_channels = _pay_channels(errs, bill, unit.pay_channels if unit else None)

    if not errs.items:
        charged = sum(c.amt_fen for c in charge_items)
        if charged != total:
            errs.add(
                "total_amount",
                f"{format_fen(total)} differs from the sum of charge items {format_fen(charged)}",
            )
        paid = sum(p.amount_fen for p in pay_channels)
        if paid != total:
            errs.add(
                "pay_channels",
                f"sum {format_fen(paid)} differs from total_amount {format_fen(total)}",
            )
    insurance = _insurance(errs, bill, total)
    kind = BUS_TYPES.get(bill.bus_type, "")
    if kind in NON_MEDICAL_KINDS:
        # Non-tax, 往来 and donation bills are not medical charges.
        if insurance is not None:
            errs.add("insurance", f"a {kind} bill carries no medical insurance split")
        if any(getattr(bill.medical, name) for name in bill.medical.__slots__):
            errs.add("medical", f"a {kind} bill carries no medical details")

    if errs.items:
        return errs.items
    return ValidBill(
        source=bill,
        bill_code=bill_code,
        bill_kind=BUS_TYPES[bill.bus_type],
        bus_time=bus_time,
        total_fen=total,
        charge_items=charge_items,
        list_items=list_items,
        pay_channels=pay_channels,
        insurance=insurance,
    )


def _charge_items(
    errs: _Errors, bill: BillInput, unit: UnitCatalog | None, day: date
) -> tuple[ChargeItem, ...]:
    if not bill.charge_items:
        errs.add("charge_items", "at least one charge item is required")
    elif len(bill.charge_items) > MAX_CHARGE_ITEMS:
        errs.add("charge_items", f"at most {MAX_CHARGE_ITEMS} charge items")
    known = unit.charge_codes if unit is not None else None
    out: list[ChargeItem] = []
    seen: set[str] = set()
    for i, c in enumerate(bill.charge_items[:MAX_CHARGE_ITEMS]):
        p = f"charge_items[{i}]"
        code, name, code_path = _mapped(errs, p, c, unit, day)
        if not code_path:
            pass  # the HIS code was refused with its own path
        elif not _CODE.match(code):
            errs.add(code_path, f"must be 1-20 letters or digits, got {quote(code)}")
        elif known is not None and code not in known:
            errs.add(code_path, f"unknown charge item code {quote(code)}")
        elif unit is not None and (why := usable(unit.charge_periods, code, day)):
            errs.add(code_path, f"charge item {quote(code)} {why} (bill dated {day.isoformat()})")
        elif code in seen:
            errs.add(code_path, f"charge item {quote(code)} appears twice")
        seen.add(code)
        # An HIS code refused gave no name to require (one error, not two).
        errs.text(f"{p}.charge_name", name, max_len=100, required=bool(code_path))
        errs.text(f"{p}.unit", c.unit, max_len=20)
        errs.text(f"{p}.remark", c.remark, max_len=100)
        std = _quantity(errs, f"{p}.std", c.std)
        number = _quantity(errs, f"{p}.number", c.number)
        amt = _amount(errs, f"{p}.amt", c.amt)
        self_amt = _amount(errs, f"{p}.self_amt", c.self_amt, required=False)
        if self_amt > amt:
            errs.add(f"{p}.self_amt", "must not exceed amt")
        out.append(ChargeItem(c.sort_no, code, name, c.unit, std, number, amt, self_amt, c.remark))
    return tuple(out)


def _mapped(
    errs: _Errors, p: str, c: ChargeItemInput, unit: UnitCatalog | None, day: date
) -> tuple[str, str, str]:
    """(fiscal code, name, path for errors about the code; '' once refused) of a
    charge item: its HIS code resolved through the mapping (engine.catalog)."""
    if not c.his_code:
        return c.charge_code, c.charge_name, f"{p}.charge_code"
    if errs.text(f"{p}.his_code", c.his_code, max_len=50, pattern=_IDENT, form="an HIS code"):
        if unit is not None:
            m = map_item(unit.his_codes, unit.charge_codes, c, day, quote)
            if not m.error:
                return m.charge_code, m.charge_name, f"{p}.his_code"
            errs.add(f"{p}.{m.field}", m.error)
    return c.charge_code, c.charge_name, ""


def _list_items(
    errs: _Errors, bill: BillInput, charges: tuple[ChargeItem, ...]
) -> tuple[ListItem, ...]:
    if len(bill.list_items) > MAX_LIST_ITEMS:
        errs.add("list_items", f"at most {MAX_LIST_ITEMS} list items")
        return ()
    by_code = {c.charge_code: c for c in charges}
    # A list line may name its charge item by the HIS code the bill sent.
    his = {
        src.his_code: c.charge_code
        for src, c in zip(bill.charge_items, charges, strict=False)
        if src.his_code
    }
    out: list[ListItem] = []
    sums: dict[str, int] = {}
    for i, li in enumerate(bill.list_items):
        p = f"list_items[{i}]"
        errs.text(
            f"{p}.list_code",
            li.list_code,
            max_len=50,
            required=True,
            pattern=_IDENT,
            form="letters, digits, '_', '-', '.' or '/'",
        )
        errs.text(f"{p}.list_name", li.list_name, max_len=100, required=True)
        errs.text(f"{p}.spec", li.spec, max_len=50)
        errs.text(f"{p}.unit", li.unit, max_len=20)
        li_code = his.get(li.charge_code, li.charge_code)
        if li_code not in by_code:
            errs.add(
                f"{p}.charge_code",
                f"refers to no charge item on this bill: {quote(li.charge_code)}",
            )
        std = _quantity(errs, f"{p}.std", li.std)
        number = _quantity(errs, f"{p}.number", li.number)
        amt = _amount(errs, f"{p}.amt", li.amt)
        self_amt = _amount(errs, f"{p}.self_amt", li.self_amt, required=False)
        sums[li_code] = sums.get(li_code, 0) + amt
        out.append(
            ListItem(
                li.sort_no,
                li.list_code,
                li.list_name,
                li_code,
                li.spec,
                li.unit,
                std,
                number,
                amt,
                self_amt,
            )
        )
    if not errs.items:
        # The itemised list must add up to the charge item it details.
        for i, c in enumerate(charges):
            if c.charge_code in sums and sums[c.charge_code] != c.amt_fen:
                errs.add(
                    f"charge_items[{i}].amt",
                    f"{format_fen(c.amt_fen)} differs from the sum of its list items "
                    f"{format_fen(sums[c.charge_code])}",
                )
    return tuple(out)


def _pay_channels(
    errs: _Errors, bill: BillInput, known: frozenset[str] | None
) -> tuple[PayChannel, ...]:
    if not bill.pay_channels:
        errs.add("pay_channels", "at least one pay channel is required")
    elif len(bill.pay_channels) > MAX_PAY_CHANNELS:
        errs.add("pay_channels", f"at most {MAX_PAY_CHANNELS} pay channels")
    out: list[PayChannel] = []
    seen: set[str] = set()
    for i, pc in enumerate(bill.pay_channels[:MAX_PAY_CHANNELS]):
        p = f"pay_channels[{i}]"
        code = pc.pay_channel_code
        if not errs.text(f"{p}.pay_channel_code", code, max_len=20, required=True):
            pass
        elif known is not None and code not in known:
            errs.add(f"{p}.pay_channel_code", f"unknown pay channel {quote(code)}")
        elif code in seen:
            errs.add(f"{p}.pay_channel_code", f"pay channel {quote(code)} appears twice")
        seen.add(pc.pay_channel_code)
        out.append(PayChannel(pc.pay_channel_code, _amount(errs, f"{p}.amount", pc.amount)))
    return tuple(out)


def _insurance(errs: _Errors, bill: BillInput, total: int) -> InsuranceSplit | None:
    ins = bill.insurance
    amounts = (ins.fund_pay, ins.other_fund_pay, ins.account_pay, ins.own_pay, ins.self_pay)
    if not any(a.strip() for a in amounts) and not ins.medical_insurance_id:
        return None
    split = InsuranceSplit(
        fund_pay_fen=_amount(errs, "insurance.fund_pay", ins.fund_pay, required=False),
        other_fund_pay_fen=_amount(
            errs, "insurance.other_fund_pay", ins.other_fund_pay, required=False
        ),
        account_pay_fen=_amount(errs, "insurance.account_pay", ins.account_pay, required=False),
        own_pay_fen=_amount(errs, "insurance.own_pay", ins.own_pay, required=False),
        self_pay_fen=_amount(errs, "insurance.self_pay", ins.self_pay, required=False),
        medical_insurance_id=ins.medical_insurance_id,
        med_care_institution=ins.med_care_institution,
    )
    errs.text(
        "insurance.medical_insurance_id",
        ins.medical_insurance_id,
        max_len=50,
        pattern=_IDENT,
        form="letters, digits, '_', '-', '.' or '/'",
    )
    errs.text("insurance.med_care_institution", ins.med_care_institution, max_len=100)
    if errs.items:
        return split
    covered = (
        split.fund_pay_fen + split.other_fund_pay_fen + split.account_pay_fen + split.own_pay_fen
    )
    if covered != total:
        errs.add(
            "insurance",
            f"fund_pay + other_fund_pay + account_pay + own_pay = {format_fen(covered)} "
            f"differs from total_amount {format_fen(total)}",
        )
    if split.self_pay_fen > split.own_pay_fen:
        errs.add("insurance.self_pay", "must not exceed own_pay")
    return split


def _medical(errs: _Errors, bill: BillInput) -> None:
    """The medical details: optional each, bounded and shaped when present."""
    med = bill.medical
    ident = "at most 50 letters, digits, '_', '-', '.' or '/'"
    errs.text("medical.patient_no", med.patient_no, max_len=50, pattern=_IDENT, form=ident)
    errs.text("medical.case_number", med.case_number, max_len=50, pattern=_IDENT, form=ident)
    if errs.text("medical.sex", med.sex, max_len=2) and med.sex and med.sex not in SEXES:
        errs.add(
            "medical.sex",
            f"must be one of 0, 1, 2, 9 (GB/T 2261.1) or 男, 女, got {quote(med.sex)}",
        )
    form = "an age such as 35, 35岁, 1岁3月, 3个月, 2周, 15天 or 6小时"
    if errs.text("medical.age", med.age, max_len=10, pattern=_AGE, form=form) and med.age:
        m = _AGE.match(med.age)
        years = m and (m.group("years") or m.group("y2"))
        if years and int(years) > MAX_AGE_YEARS:
            errs.add("medical.age", f"must be at most {MAX_AGE_YEARS} years, got {quote(med.age)}")
    if (
        errs.text(
            "medical.consultation_date",
            med.consultation_date,
            max_len=10,
            pattern=_DATE,
            form="a date yyyyMMdd or yyyy-MM-dd",
        )
        and med.consultation_date
    ):
        m = _DATE.match(med.consultation_date)
        assert m is not None  # the pattern passed
        try:
            date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            errs.add(
                "medical.consultation_date",
                f"is not a real date: {quote(med.consultation_date)}",
            )
    errs.text("medical.department", med.department, max_len=50)
    errs.text("medical.medical_institution", med.medical_institution, max_len=100)
