"""Masking of personal data for callers who may not read it (脱敏).

The shapes follow common practice in China (GB/T 35273 and the banks' and
hospitals' own screens): an ID card number keeps its first 3 and last 4
characters (``110***********1234``), a mobile number its first 3 and last 4
(``138****1234``), an e-mail address the first character of its local part
(``z***@example.com``), a card number its last 4. The length of a masked ID
card or phone number is kept, so a cashier can still tell a 15- from an
18-character ID. Pure functions; the edge decides who sees what.
"""

from __future__ import annotations

from dataclasses import replace

from engine.model import BillInput, IssuedBill, PayerInput

__all__ = [
    "mask_card",
    "mask_email",
    "mask_id_card",
    "mask_payer",
    "mask_tel",
    "masked_bill",
    "payer_only",
]


def _keep(value: str, head: int, tail: int) -> str:
    """``value`` with all but its first ``head`` and last ``tail`` characters
    starred; too short to keep both, only its last character (if any) shows."""
    if not value:
        return ""
    if len(value) <= head + tail + 1:
        return "*" * (len(value) - 1) + value[-1] if len(value) > 2 else "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def mask_id_card(value: str) -> str:
    """``110101199003071234`` -> ``110***********1234``."""
    return _keep(value, 3, 4)


def mask_tel(value: str) -> str:
    """``13800138000`` -> ``138****8000``."""
    return _keep(value, 3, 4)


def mask_card(value: str) -> str:
    """A medical or bank card number: only its last 4 characters."""
    return _keep(value, 0, 4)


def mask_email(value: str) -> str:
    """``zhang.san@example.com`` -> ``z***@example.com``."""
    if not value:
        return ""
    local, at, domain = value.rpartition("@")
    if not at:
        return _keep(value, 1, 0)
    return (local[:1] if len(local) > 1 else "") + "***@" + domain


def mask_payer(payer: PayerInput) -> PayerInput:
    return replace(
        payer,
        id_card_no=mask_id_card(payer.id_card_no),
        card_no=mask_card(payer.card_no),
        tel=mask_tel(payer.tel),
        email=mask_email(payer.email),
    )


def masked_bill(bill: IssuedBill) -> IssuedBill:
    """A bill as a caller who may not read personal data sees it: the payer in
    its request masked, and no canonical bytes (they name the payer in full; the
    signatures over them are dropped too, as they cannot be checked without)."""
    source = bill.source
    if source is not None:
        source = replace(source, payer=mask_payer(source.payer))
    return replace(bill, source=source, canonical=b"", unit_signature=b"", fiscal_signature=b"")


def payer_only(bill: IssuedBill) -> IssuedBill:
    """A listing's view: the request reduced to its payer (who paid), no canonical
    bytes or signatures (one GetBill away)."""
    source = None if bill.source is None else BillInput(payer=bill.source.payer)
    return replace(bill, source=source, canonical=b"", unit_signature=b"", fiscal_signature=b"")
