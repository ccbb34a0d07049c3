"""The unit's signing certificate: issued by the CA for a key the signing server
holds (or an existing one imported), registered with the fiscal platform, made
active (new bills are signed with its key id), rotated with overlap, and watched
for expiry.

Rotation: issue a certificate for a new key id while the old one is valid,
then activate it. The platform verifies each bill against the unit's
certificate valid at the bill's issue time, so bills signed under the old key
still verify, and new ones carry the new key's signature.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from clients.ca import CaClient
from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from engine.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.x509 import Certificate, parse, pop_message
from ops import metrics
from storage.catalog import certs as store
from storage.catalog.certs import StoredCertificate

__all__ = ["Certificates", "Expiry", "expiry_loop", "from_pem_or_der"]

log = logging.getLogger(__name__)
MAX_VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class Expiry:
    """An active certificate and the days it has left (what the inspection reads)."""

    unit_code: str
    serial: str
    not_after: datetime
    days_left: int
    warn: bool


def from_pem_or_der(data: bytes) -> bytes:
    """The DER of a certificate given as PEM or DER."""
    text = data.strip()
    if text.startswith(b"-----BEGIN CERTIFICATE-----"):
        body = b"".join(line for line in text.splitlines() if not line.startswith(b"-----"))
        return base64.b64decode(body)
    return bytes(data)


class Certificates:
    def __init__(
        self,
        pool: asyncpg.Pool,
        # The engine's one signing-server client: each call names the unit's key.
        signer: SignerClient,
        fiscal: FiscalClient,
        ca: CaClient,
        *,
        warn_days: int = 30,
    ) -> None:
        self._pool = pool
        self._signer = signer
        self._fiscal = fiscal
        self._ca = ca
        self._warn_days = warn_days

    async def _unit_name(self, unit_code: str) -> str:
        name = await self._pool.fetchval(
            "SELECT unit_name FROM units WHERE unit_code = $1", unit_code
        )
        if name is None:
            raise NotFound(f"unknown unit {unit_code!r}")
        return str(name)

    async def issue(
        self,
        unit_code: str,
        key_id: str,
        actor: str,
        *,
        valid_days: int = 365,
        not_before: datetime | None = None,
    ) -> StoredCertificate:
        """Have the CA certify the signing server's key ``key_id`` for the unit,
        register the certificate with the platform and keep it."""
        if not 0 < valid_days <= MAX_VALID_DAYS:
            raise InvalidArgument(f"valid_days: 1..{MAX_VALID_DAYS}", field="valid_days")
        name = await self._unit_name(unit_code)
        key = await self._signer.public_key(key_id)
        [proof] = await self._signer.sign_batch([pop_message(unit_code, key.point)], key_id=key_id)
        der = await self._ca.issue(
            unit_code=unit_code,
            unit_name=name,
            public_key=key.point,
            proof=proof,
            valid_days=valid_days,
            not_before=not_before,
        )
        return await self._register(unit_code, parse(der), key_id, actor)

    async def import_(
        self, unit_code: str, key_id: str, data: bytes, actor: str
    ) -> StoredCertificate:
        """Take an existing certificate of a key the signing server holds."""
        await self._unit_name(unit_code)
        try:
            cert = parse(from_pem_or_der(data))
        except ValueError as exc:
            raise InvalidArgument(f"certificate: {exc}", field="certificate") from exc
        key = await self._signer.public_key(key_id)
        if key.point != cert.public_key:
            raise FailedPrecondition(
                f"certificate {cert.serial_hex} is not for the signing server's key {key_id!r}"
            )
        return await self._register(unit_code, cert, key_id, actor)

    async def _register(
        self, unit_code: str, cert: Certificate, key_id: str, actor: str
    ) -> StoredCertificate:
        # The platform first: a certificate it refused is never kept as ours.
        await self._fiscal.register_certificate(unit_code, cert.der)
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await store.store(conn, unit_code, cert, key_id, actor)
        await self.expiries()
        return stored

    async def activate(self, unit_code: str, serial: str, actor: str) -> StoredCertificate:
        async with self._pool.acquire() as conn, conn.transaction():
            got = await store.activate(conn, unit_code, serial, actor, now=datetime.now(UTC))
        await self.expiries()
        return got

    async def of_unit(self, unit_code: str) -> list[StoredCertificate]:
        return await store.certificates(self._pool, unit_code)

    async def expiries(self, now: datetime | None = None) -> list[Expiry]:
        """Every unit's active certificate with its days left; sets the gauge
        ebill_certificate_days_left and logs a warning inside the warning window."""
        now = now or datetime.now(UTC)
        out = []
        for c in await store.certificates(self._pool):
            if not c.active:
                continue
            days = int((c.not_after - now).total_seconds() // 86400)
            warn = days < self._warn_days
            metrics.CERTIFICATE_DAYS_LEFT.labels(c.unit_code).set(days)
            if warn:
                log.warning(
                    "unit %s signing certificate %s expires in %d days (%s): issue and"
                    " activate its successor",
                    c.unit_code,
                    c.serial,
                    days,
                    c.not_after.isoformat(),
                )
            out.append(Expiry(c.unit_code, c.serial, c.not_after, days, warn))
        return out


async def expiry_loop(certificates: Certificates, interval_s: float = 3600.0) -> None:
    """Refresh the expiry gauge and warnings now and every ``interval_s``."""
    while True:
        try:
            await certificates.expiries()
        except Exception:
            log.exception("certificate expiry check failed")
        await asyncio.sleep(interval_s)
