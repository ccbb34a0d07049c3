"""Self-service retrieval (issue #15, item 5): a patient who scanned the unit's QR
code at the window finds his bills by phone or ID card number and an SMS code.

- A code goes to the phone (given, or the one on the payer's latest bill when he
  gave an ID card number); the answer never says whether bills were found, so
  the page cannot be used to learn who was a patient.
- Sends are bounded per phone (one a minute, five an hour) and per client
  address (twenty an hour); a code lasts five minutes and allows five tries.
- A right code gives a session (a random token; only its hash is stored) that
  lists the payer's bills of that unit, each linked to its H5 page.

Phones, ID card numbers and codes are stored only as keyed digests (the data
key ring's index key), like the payer data they are matched against.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from clients._http import ChannelError
from clients.sms import SmsClient
from engine.delivery import Channel, bill_url, mask_address, normalise_phone
from engine.errors import InvalidArgument, PermissionDenied, ResourceExhausted, Unavailable
from engine.sealing import KeyRing
from storage import selfservice as store
from storage.personal import ID_CARD, TEL

__all__ = ["CODE_TEMPLATE", "Limits", "Lookup", "SelfService", "SelfServiceBill"]

CODE_TEMPLATE = "SMS_SELFSERVICE_CODE"


class Lookup(StrEnum):
    TEL = "tel"
    ID_CARD = "id_card"


@dataclass(frozen=True, slots=True)
class Limits:
    code_ttl: timedelta = timedelta(minutes=5)
    tries_per_code: int = 5
    per_phone_minute: int = 1
    per_phone_hour: int = 5
    per_ip_hour: int = 20
    session_ttl: timedelta = timedelta(minutes=15)
    bills_shown: int = 50


@dataclass(frozen=True, slots=True)
class SelfServiceBill:
    bill_code: str
    bill_no: str
    total_fen: int
    issued_at: datetime
    status: str
    red: bool
    url: str


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SelfService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        ring: KeyRing,
        sms: SmsClient | None,
        *,
        public_url: str,
        limits: Limits = Limits(),
    ) -> None:
        self.pool = pool
        self.ring = ring
        self.sms = sms
        self.public_url = public_url
        self.limits = limits

    def _lookup_hash(self, kind: Lookup, value: str) -> bytes:
        digest = self.ring.index(value, TEL if kind is Lookup.TEL else ID_CARD)
        if digest is None:
            raise InvalidArgument("value: is required", field="value")
        return digest

    def _code_hash(self, code_id: int, code: str) -> bytes:
        digest = self.ring.index(f"{code_id}:{code}", "selfservice.code")
        assert digest is not None
        return digest

    async def unit_name(self, unit_code: str) -> str:
        name = await store.unit_name(self.pool, unit_code)
        if name is None:
            raise InvalidArgument("unit: unknown unit", field="unit")
        return name

    async def request_code(self, unit_code: str, kind: Lookup, value: str, ip: str) -> str:
        """Send a code for ``value``; returns what the page may say about where it
        went (the masked phone when the patient gave it, else a neutral text)."""
        await self.unit_name(unit_code)
        value = value.strip()
        if kind is Lookup.TEL:
            phone = normalise_phone(value)
            if phone is None:
                raise InvalidArgument("value: not a mobile number", field="value")
        else:
            if not (len(value) in (15, 18) and value[:-1].isdigit()):
                raise InvalidArgument("value: not an ID card number", field="value")
            phone = await self._phone_of(unit_code, value)
        lookup = self._lookup_hash(kind, value if kind is Lookup.ID_CARD else phone or value)
        lim = self.limits
        used = await store.recent_sends(self.pool, self.ring.index(phone or "", TEL), ip)
        if used.ip_hour >= lim.per_ip_hour:
            raise ResourceExhausted("too many codes from this address", retry_after_s=600)
        if phone is None:
            # No bill names this ID card with a phone: answer as if a code went
            # out, so the page tells nobody who is a patient here.
            await store.note_attempt(self.pool, ip)
            return "验证码已发送至您预留的手机"
        if used.phone_minute >= lim.per_phone_minute:
            raise ResourceExhausted("a code was sent less than a minute ago", retry_after_s=60)
        if used.phone_hour >= lim.per_phone_hour:
            raise ResourceExhausted("too many codes for this phone", retry_after_s=3600)
        code = f"{secrets.randbelow(10**6):06d}"
        phone_hash = self.ring.index(phone, TEL)
        assert phone_hash is not None
        code_id = await store.new_code(
            self.pool, unit_code, phone_hash, kind.value, lookup, ip, lim.code_ttl,
            lambda cid: self._code_hash(cid, code),
        )  # fmt: skip
        if self.sms is None:
            raise Unavailable("SMS is not configured", retry_after_s=60)
        minutes = str(int(lim.code_ttl.total_seconds() // 60))
        try:
            await self.sms.send(phone, CODE_TEMPLATE, {"code": code, "minutes": minutes})
        except ChannelError as exc:
            await store.drop_code(self.pool, code_id)
            raise Unavailable(f"the code could not be sent: {exc.code}", retry_after_s=30) from exc
        if kind is Lookup.TEL:
            return f"验证码已发送至 {mask_address(Channel.SMS, phone)}"
        return "验证码已发送至您预留的手机"

    async def _phone_of(self, unit_code: str, id_card: str) -> str | None:
        digest = self.ring.index(id_card, ID_CARD)
        tel = await store.latest_phone(self.pool, self.ring, unit_code, digest)
        return normalise_phone(tel) if tel else None

    async def verify(self, unit_code: str, kind: Lookup, value: str, code: str) -> str:
        """Check the code; returns a session token (shown once, as a cookie)."""
        value = value.strip()
        if kind is Lookup.TEL:
            value = normalise_phone(value) or value
        lookup = self._lookup_hash(kind, value)
        row = await store.current_code(self.pool, unit_code, kind.value, lookup)
        if row is None:
            raise InvalidArgument("code: expired or not requested; ask for a new one", field="code")
        code_id, attempts = row
        if attempts >= self.limits.tries_per_code:
            raise ResourceExhausted("code: too many wrong tries; ask for a new one",
                                    retry_after_s=60)  # fmt: skip
        ok = len(code) == 6 and hmac.compare_digest(
            self._code_hash(code_id, code), await store.code_hash(self.pool, code_id)
        )
        if not ok:
            await store.wrong_try(self.pool, code_id)
            raise InvalidArgument("code: wrong code", field="code")
        token = secrets.token_urlsafe(32)
        await store.use_code(
            self.pool, code_id, _token_hash(token), unit_code, kind.value, lookup,
            self.limits.session_ttl,
        )  # fmt: skip
        return token

    async def bills(self, unit_code: str, token: str) -> list[SelfServiceBill]:
        session = await store.session(self.pool, _token_hash(token), unit_code)
        if session is None:
            raise PermissionDenied("session expired; ask for a new code")
        kind, lookup = session
        rows = await store.bills_of(self.pool, unit_code, kind, lookup, self.limits.bills_shown)
        return [
            SelfServiceBill(
                r["bill_code"], r["bill_no"], r["total_fen"], r["issued_at"], r["status"],
                r["red_of"] is not None,
                bill_url(self.public_url, r["bill_code"], r["bill_no"], r["check_code"]),
            )
            for r in rows
        ]  # fmt: skip
