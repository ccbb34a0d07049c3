"""The archive of a period (issue #16 item 4): its bills in one ZIP that a
records office keeps and anyone can check later, and the bills issued in the
period that the archive does not hold (the issued-versus-archived difference).

The ZIP holds, per bill, ``<code>-<no>/canonical.bin`` (the bytes both
signatures are over), ``unit.sig`` and ``fiscal.sig`` (DER SM2), ``qr.sig``
when the platform signed the QR facts, and ``bill.pdf`` (usecases/rendering:
the PDF carries the same export); at the top ``unit.pub`` (the unit's SM2
public key, uncompressed point, hex), ``manifest.json`` (every file's SM3, the
period and the unit, canonical JSON) and ``manifest.sig``: the unit's signature
over manifest.json through the signing server, so one check of the manifest
and one SM3 per file show that nothing was changed, added or left out.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

import asyncpg

from engine.errors import InvalidArgument
from engine.model import IssuedBill
from engine.sealing import KeyRing
from engine.sm2 import VerifyingKey, sm3
from engine.translog import canonical_json
from storage import archive_export as store
from storage.archive_export import Unarchived

__all__ = ["ARCHIVE_MAX_BILLS", "Archive", "ArchiveFile", "Pdfs", "Signer", "Unarchived"]

# One ZIP is built in memory and each bill's PDF rendered (tens of ms each):
# past this a period is refused with a request to narrow it.
ARCHIVE_MAX_BILLS = 2000
_PAGE = 200


class Signer(Protocol):
    """The unit's signing key (clients.signer.SignerClient)."""

    async def sign_batch(
        self, messages: Sequence[bytes], timeout_s: float | None = None
    ) -> list[bytes]: ...

    async def public_key(self) -> VerifyingKey: ...


class Pdfs(Protocol):
    """Bills rendered to PDF (usecases.rendering.Rendering)."""

    async def pdf(self, bill_code: str, bill_no: str, check_code: str | None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    name: str  # a file name to save it under
    data: bytes
    bills: int


class Archive:
    def __init__(self, pool: asyncpg.Pool, ring: KeyRing, pdfs: Pdfs, signer: Signer) -> None:
        self._pool, self._ring, self._pdfs, self._signer = pool, ring, pdfs, signer

    async def _bills(
        self, unit_code: str, first: date, last: date, place_code: str
    ) -> list[IssuedBill]:
        out: list[IssuedBill] = []
        after = 0
        while True:
            page = await store.archived_page(
                self._pool, unit_code, first, last, self._ring,
                place_code=place_code, after_id=after, limit=_PAGE,
            )  # fmt: skip
            out.extend(page)
            if len(out) > ARCHIVE_MAX_BILLS:
                raise InvalidArgument(
                    f"more than {ARCHIVE_MAX_BILLS} bills in {first}..{last}: "
                    "archive a shorter period or one issuing point",
                    field="to",
                )
            if len(page) < _PAGE:
                return out
            after = page[-1].bill_id

    async def zip(
        self, unit_code: str, first: date, last: date, *, place_code: str = ""
    ) -> ArchiveFile:
        if last < first:
            raise InvalidArgument("the period ends before it starts", field="to")
        bills = await self._bills(unit_code, first, last, place_code)
        files: dict[str, bytes] = {}
        for b in bills:
            folder = f"{b.bill_code}-{b.bill_no}/"
            files[folder + "canonical.bin"] = b.canonical
            files[folder + "unit.sig"] = b.unit_signature
            files[folder + "fiscal.sig"] = b.fiscal_signature
            if b.qr_signature:
                files[folder + "qr.sig"] = b.qr_signature
            files[folder + "bill.pdf"] = await self._pdfs.pdf(b.bill_code, b.bill_no, None)
        key = await self._signer.public_key()
        files["unit.pub"] = key.point.hex().encode()
        manifest = canonical_json(
            {
                "unit": unit_code,
                "place": place_code,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "made_at": datetime.now(UTC).isoformat(),
                "bills": [f"{b.bill_code}/{b.bill_no}" for b in bills],
                "sm3": {name: sm3(data).hex() for name, data in sorted(files.items())},
            }
        )
        [signature] = await self._signer.sign_batch([manifest])
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("manifest.json", manifest, zipfile.ZIP_DEFLATED)
            z.writestr("manifest.sig", signature)
            for name, data in files.items():
                # PDFs are compressed already; the rest is small.
                how = zipfile.ZIP_STORED if name.endswith(".pdf") else zipfile.ZIP_DEFLATED
                z.writestr(name, data, how)
        where = f"-{place_code}" if place_code else ""
        name = f"archive-{unit_code}{where}-{first:%Y%m%d}-{last:%Y%m%d}.zip"
        return ArchiveFile(name, buf.getvalue(), len(bills))

    async def difference(
        self, unit_code: str, first: date, last: date, *, place_code: str = ""
    ) -> list[Unarchived]:
        return await store.unarchived(self._pool, unit_code, first, last, place_code=place_code)

    async def retry(self, unit_code: str, bill_ids: list[int], *, operator: str) -> int:
        return await store.retry_unarchived(self._pool, unit_code, bill_ids, operator=operator)
