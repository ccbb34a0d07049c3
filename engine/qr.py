"""The QR code of a bill: its key facts and the fiscal platform's signature over
them, so that any app holding the platform's public key verifies it offline (the
way a ZATCA invoice QR carries its own signature).

Payload text, fields joined by ``:`` (no field can contain one)::

    EB1:<bill_code>:<bill_no>:<check_code>:<amount>:<yyyymmdd>:<signature>

``amount`` is yuan with two decimals (negative on a red bill), the date is the
issue date in China Standard Time, and ``signature`` is the platform's SM2/SM3
DER signature, base64url without padding, over the UTF-8 bytes of everything
before the last ``:``. The platform derives the facts itself from the canonical
document it countersigns (:func:`facts_of`), so it signs only what it has seen.
A QR may also carry the payload as the ``qr`` parameter of a verification URL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.model import CST
from engine.money import format_fen, parse_fen
from engine.sm2 import VerifyingKey

__all__ = ["QR_VERSION", "QrFacts", "QrPayload", "facts_of", "facts_of_canonical", "parse"]

QR_VERSION = "EB1"


@dataclass(frozen=True, slots=True)
class QrFacts:
    """What the QR states about a bill."""

    bill_code: str
    bill_no: str
    check_code: str
    total_fen: int
    issue_date: date

    @property
    def message(self) -> bytes:
        """The bytes the platform signs."""
        fields = (
            QR_VERSION,
            self.bill_code,
            self.bill_no,
            self.check_code,
            format_fen(self.total_fen),
            self.issue_date.strftime("%Y%m%d"),
        )
        return ":".join(fields).encode("utf-8")


@dataclass(frozen=True, slots=True)
class QrPayload:
    facts: QrFacts
    # Empty: a bill countersigned before the platform signed QR payloads.
    signature: bytes

    @property
    def text(self) -> str:
        sig = base64.urlsafe_b64encode(self.signature).rstrip(b"=").decode("ascii")
        return self.facts.message.decode("utf-8") + ":" + sig

    def verify(self, key: VerifyingKey) -> bool:
        return bool(self.signature) and key.verify(self.facts.message, self.signature)


def _signed_fen(text: str) -> int:
    text = str(text)
    if text.startswith("-"):
        return -parse_fen(text[1:])
    return parse_fen(text)


def facts_of(doc: Mapping[str, Any]) -> QrFacts:
    """The QR facts of a canonical document (a parsed one). ValueError/KeyError
    when it lacks them."""
    issued = datetime.fromisoformat(str(doc["issued_at"]).replace("Z", "+00:00"))
    return QrFacts(
        bill_code=str(doc["bill_code"]),
        bill_no=str(doc["bill_no"]),
        check_code=str(doc["check_code"]),
        total_fen=_signed_fen(doc["total_amount"]),
        issue_date=issued.astimezone(CST).date(),
    )


def facts_of_canonical(canonical: bytes) -> QrFacts:
    doc = json.loads(canonical)
    if not isinstance(doc, dict):
        raise ValueError("canonical bytes are not a bill document")
    return facts_of(doc)


def parse(text: str) -> QrPayload:
    """A payload from what a QR holds: the payload itself or a URL with ``qr=``.
    ValueError naming what is wrong."""
    text = text.strip()
    if "://" in text:
        values = parse_qs(urlsplit(text).query).get("qr")
        if not values:
            raise ValueError("the URL carries no qr parameter")
        text = values[0]
    parts = text.split(":")
    if len(parts) != 7 or parts[0] != QR_VERSION:
        raise ValueError(f"not an {QR_VERSION} bill QR payload")
    _, code, no, check, amount, day, sig = parts
    if not (len(code) == 8 and code.isdigit() and len(no) == 10 and no.isdigit()):
        raise ValueError("bill code or number malformed")
    try:
        total = _signed_fen(amount)
        issue_date = datetime.strptime(day, "%Y%m%d").date()
        signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"QR payload malformed: {exc}") from exc
    facts = QrFacts(code, no, check, total, issue_date)
    if facts.message.decode("utf-8") != ":".join(parts[:6]):
        # Another spelling of the same amount or date would sign other bytes.
        raise ValueError("QR payload not in its canonical spelling")
    return QrPayload(facts, signature)
