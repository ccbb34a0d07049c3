"""Checking a bill as a holder can (查验): its unit signature, the platform's
countersignature and the platform's QR signature, from the bill alone and the
public keys; plus the exported form of a bill that carries all of them, and the
masks applied to personal data on public pages.

An export (``ebill-export/1``) is JSON: the canonical bytes and each signature in
base64, and the unit's public key in hex. The unit key in an export is only as
good as the countersignature: the platform verified the unit signature under the
unit's registered key before countersigning the pair, so a holder who trusts
the platform's key trusts the pair.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import StrEnum

from engine.canonical import countersign_message
from engine.qr import QrPayload, facts_of_canonical
from engine.sm2 import VerifyingKey

__all__ = [
    "EXPORT_FORMAT",
    "BillExport",
    "Checks",
    "Verdict",
    "check_signatures",
    "mask_email",
    "mask_id",
    "mask_name",
    "mask_phone",
]

EXPORT_FORMAT = "ebill-export/1"


class Verdict(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    # No signature to check (a bill not yet countersigned, an old bill's QR).
    ABSENT = "absent"
    # No key to check it with.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Checks:
    unit_signature: Verdict
    countersignature: Verdict
    qr_signature: Verdict

    @property
    def ok(self) -> bool:
        """Authentic: both signatures verify and no QR signature fails."""
        return (
            self.unit_signature is Verdict.VALID
            and self.countersignature is Verdict.VALID
            and self.qr_signature in (Verdict.VALID, Verdict.ABSENT)
        )


def _verdict(key: VerifyingKey | None, message: bytes, signature: bytes) -> Verdict:
    if not signature:
        return Verdict.ABSENT
    if key is None:
        return Verdict.UNKNOWN
    return Verdict.VALID if key.verify(message, signature) else Verdict.INVALID


def check_signatures(
    canonical: bytes,
    unit_signature: bytes,
    fiscal_signature: bytes,
    qr_signature: bytes,
    *,
    fiscal_key: VerifyingKey | None,
    unit_key: VerifyingKey | None,
) -> Checks:
    """Each signature of a bill checked over the bytes it covers."""
    try:
        qr_message = facts_of_canonical(canonical).message
    except (ValueError, KeyError, TypeError):
        qr_message = b""
    qr = (
        Verdict.INVALID
        if qr_signature and not qr_message
        else _verdict(fiscal_key, qr_message, qr_signature)
    )
    return Checks(
        unit_signature=_verdict(unit_key, canonical, unit_signature),
        countersignature=_verdict(
            fiscal_key, countersign_message(canonical, unit_signature), fiscal_signature
        ),
        qr_signature=qr,
    )


@dataclass(frozen=True, slots=True)
class BillExport:
    """A bill with everything needed to check it offline."""

    canonical: bytes
    unit_signature: bytes
    fiscal_signature: bytes
    qr_signature: bytes
    unit_public_key: bytes

    def to_json(self) -> bytes:
        def b64(v: bytes) -> str:
            return base64.b64encode(v).decode("ascii")

        return json.dumps(
            {
                "format": EXPORT_FORMAT,
                "canonical": b64(self.canonical),
                "unit_signature": b64(self.unit_signature),
                "fiscal_signature": b64(self.fiscal_signature),
                "qr_signature": b64(self.qr_signature),
                "unit_public_key": self.unit_public_key.hex(),
            },
            indent=1,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> BillExport:
        """ValueError naming what is wrong."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("format") != EXPORT_FORMAT:
            raise ValueError(f"not an {EXPORT_FORMAT} document")
        try:
            return cls(
                canonical=base64.b64decode(obj["canonical"], validate=True),
                unit_signature=base64.b64decode(obj["unit_signature"], validate=True),
                fiscal_signature=base64.b64decode(obj["fiscal_signature"], validate=True),
                qr_signature=base64.b64decode(obj.get("qr_signature", ""), validate=True),
                unit_public_key=bytes.fromhex(obj.get("unit_public_key", "")),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ValueError(f"{EXPORT_FORMAT} member missing or malformed: {exc}") from exc

    def unit_key(self) -> VerifyingKey | None:
        try:
            return VerifyingKey(self.unit_public_key) if self.unit_public_key else None
        except ValueError:
            return None

    def qr(self) -> QrPayload:
        return QrPayload(facts_of_canonical(self.canonical), self.qr_signature)

    def check(self, fiscal_key: VerifyingKey | None) -> Checks:
        return check_signatures(
            self.canonical,
            self.unit_signature,
            self.fiscal_signature,
            self.qr_signature,
            fiscal_key=fiscal_key,
            unit_key=self.unit_key(),
        )


def mask_name(name: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: the family name stays, for the holder to recognise."""
    return name[:1] + "*" * (len(name) - 1) if name else ""


def mask_id(value: str) -> str:
    """An ID or card number: the first 3 and last 4 characters stay."""
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_phone(value: str) -> str:
    return mask_id(value)


def mask_email(value: str) -> str:
    local, at, domain = value.partition("@")
    return (local[:1] + "***" + at + domain) if at else mask_id(value)
