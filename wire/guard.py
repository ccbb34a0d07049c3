"""Every string of every request, bounded and shaped before anything reads it.

Bills (``BillRequest``, wherever a request carries one) are checked by
engine.validation, field by field, with an IssueBatch refusing one bill and not the
call; everything else a request holds is checked here, against rules keyed by the
field's name, with the same helpers: a bound, no control characters, and a shape
where one is defined. A field without its own rule gets DEFAULT_RULE, so a field
added to a proto later is bounded from the start. Every violation is reported, each
with the path the caller sent (``original.by_bus.bus_no``, ``lost[2].start_no``).
Formats that name a kind of value (8-digit codes, 10-digit numbers, dates) are the
readers' (wire.requests); the bounds here are wide enough to leave them their
wording and tight enough that no message, log line or row grows with the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from engine.errors import InvalidArgument
from engine.validation import BUS_NO, EMAIL, ID_CARD, TEL, FieldChecks

__all__ = ["DEFAULT_RULE", "RULES", "Rule", "check_request", "rule_for"]

# Checked by engine.validation where it is accepted (IssueBill, IssueBatch,
# RecordOfflineBill, Refund.remainder, BackEntry.bill).
_VALIDATED_ELSEWHERE = frozenset({"ebill.v1.BillRequest"})


@dataclass(frozen=True, slots=True)
class Rule:
    max_len: int
    pattern: re.Pattern[str] | None = None
    form: str = ""
    # Line breaks allowed (a message template's body); other controls still refused.
    lines: bool = False


_CODE = re.compile(r"^[A-Za-z0-9_\-]+$")
_NUMBER = Rule(20)  # digits, checked by the readers with their own words
_TEXT = Rule(200)  # reasons and remarks: they go into signed bills and the platform

RULES: dict[str, Rule] = {
    # Serials: the same shape as a bill's own bus_no.
    "bus_no": Rule(50, BUS_NO, "1-50 characters of letters, digits, '_' or '-'"),
    "red_bus_no": Rule(50, BUS_NO, "1-50 characters of letters, digits, '_' or '-'"),
    # Who acts: codes as bills carry them, a person's name as cashier/author.
    "unit_code": Rule(50, _CODE, "letters, digits, '_' or '-'"),
    "place_code": Rule(20, _CODE, "letters, digits, '_' or '-'"),
    "to_place_code": Rule(20, _CODE, "letters, digits, '_' or '-'"),
    "operator": Rule(50),
    # Codes and numbers: the readers say which digits they want.
    "bill_code": _NUMBER,
    "paper_code": _NUMBER,
    "code": _NUMBER,
    "bill_no": _NUMBER,
    "paper_no": _NUMBER,
    "start_no": _NUMBER,
    "end_no": _NUMBER,
    "next_no": _NUMBER,
    "check_code": Rule(20),
    "issued_at": Rule(17),
    "from_date": Rule(10),
    "to_date": Rule(10),
    "period_from": Rule(10),
    "period_to": Rule(10),
    "refund_amount": Rule(24),
    "page_token": Rule(20),
    "medium": Rule(20),
    "bill_kind": Rule(30),
    # Payer look-ups: the shapes a bill's payer has.
    "payer_id_card_no": Rule(18, ID_CARD, "a 15 or 18 character resident id number"),
    "payer_tel": Rule(20, TEL, "5-20 digits"),
    "payer_card_no": Rule(50),
    "email": Rule(254, EMAIL, "an email address"),
    "reason": _TEXT,
    "remark": _TEXT,
    # Delivery (ebill.v1.DeliveryService): templates, addresses, bound accounts.
    "body": Rule(4000, lines=True),
    "subject": Rule(200),
    "provider_template": Rule(64, _CODE, "letters, digits, '_' or '-'"),
    "address": Rule(254),
    "account": Rule(128),
    "card_no": Rule(50),
    "day_from": Rule(8),
    "day_to": Rule(8),
}
DEFAULT_RULE = Rule(100)


def rule_for(field: FieldDescriptor) -> Rule:
    return RULES.get(field.name, DEFAULT_RULE)


def check_request(request: Message) -> None:
    """Raise InvalidArgument listing every string of ``request`` (outside bills)
    that is too long, holds a control character or has the wrong shape."""
    checks = FieldChecks()
    _walk(checks, request, "")
    if checks.items:
        raise InvalidArgument.from_errors(checks.items)


def _walk(checks: FieldChecks, msg: Message, prefix: str) -> None:
    for field, value in msg.ListFields():  # only what the caller set
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            rule = rule_for(field)
            values = list(value) if _repeated(field) else [value]
            for i, text in enumerate(values):
                where = f"{path}[{i}]" if _repeated(field) else path
                if rule.lines:
                    text = text.replace("\r\n", "\n").replace("\n", " ")
                checks.text(where, text, max_len=rule.max_len, pattern=rule.pattern, form=rule.form)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            kind = field.message_type
            assert kind is not None  # a message field has its type
            if kind.full_name in _VALIDATED_ELSEWHERE:
                continue
            if kind.GetOptions().map_entry:
                continue  # no maps in the API; a future one is checked where read
            if _repeated(field):
                for i, item in enumerate(value):
                    _walk(checks, item, f"{path}[{i}].")
            else:
                _walk(checks, value, f"{path}.")


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
