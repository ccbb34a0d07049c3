"""The rendering use case: a bill by number (and check code) in, its H5 page,
PDF, notice slip or export out. PDFs are rendered when first asked for and kept
in an LRU cache (render.PdfCache); issuance never waits for rendering."""

from __future__ import annotations

import asyncio
from typing import Protocol

import asyncpg

from engine.errors import NotFound
from engine.lifecycle import BillKey
from engine.model import BillStatus, IssuedBill
from engine.sealing import KeyRing
from engine.verification import BillExport
from storage.bill_names import bill_names
from storage.bills import get_bill
from usecases.rendering.keys import Keys
from usecases.rendering.render import PdfCache, render_html, render_notice, render_pdf
from usecases.rendering.view import BillView, Names, view_of

__all__ = ["Bills", "Rendering", "StoredBills"]


class Bills(Protocol):
    """Where rendered bills come from (PostgreSQL in the engine)."""

    async def get(self, bill_code: str, bill_no: str) -> IssuedBill | None: ...

    async def names(self, unit_code: str, bill_code: str) -> Names: ...


class StoredBills:
    def __init__(self, pool: asyncpg.Pool, ring: KeyRing) -> None:
        # The ring opens the sealed request and canonical bytes (storage/personal.py).
        self._pool, self._ring = pool, ring

    async def get(self, bill_code: str, bill_no: str) -> IssuedBill | None:
        return await get_bill(self._pool, BillKey.number(bill_code, bill_no), self._ring)

    async def names(self, unit_code: str, bill_code: str) -> Names:
        unit_name, bill_name, channels = await bill_names(self._pool, unit_code, bill_code)
        return Names(unit_name, bill_name, tuple(channels.items()))


# Bills that exist for a holder: signed by the unit at least, not refused.
_SHOWN = frozenset({BillStatus.PENDING_COUNTERSIGN, BillStatus.ISSUED, BillStatus.RED_FLUSHED})


class Rendering:
    def __init__(
        self, bills: Bills, keys: Keys, *, public_url: str = "", cache_size: int = 256
    ) -> None:
        self.bills = bills
        self.keys = keys
        self._public_url = public_url
        self.cache = PdfCache(cache_size)

    async def bill(self, bill_code: str, bill_no: str, check_code: str | None) -> IssuedBill:
        """The bill, if it is shown to holders and ``check_code`` matches (None:
        no check, for callers already authorised). NotFound either way, so a
        wrong check code tells nothing."""
        bill = await self.bills.get(bill_code, bill_no)
        if (
            bill is None
            or bill.status not in _SHOWN
            or (check_code is not None and bill.check_code != check_code)
        ):
            raise NotFound(f"no bill {bill_code}/{bill_no} with that check code")
        return bill

    async def view(self, bill: IssuedBill, *, masked: bool = False) -> BillView:
        return view_of(
            bill,
            await self.bills.names(bill.unit_code, bill.bill_code),
            unit_key=await self.keys.unit(bill.unit_code),
            fiscal_key=await self.keys.fiscal(),
            masked=masked,
            qr_base_url=self._public_url,
        )

    async def export(self, bill: IssuedBill) -> BillExport:
        key = await self.keys.unit(bill.unit_code)
        return BillExport(
            canonical=bill.canonical,
            unit_signature=bill.unit_signature,
            fiscal_signature=bill.fiscal_signature,
            qr_signature=bill.qr_signature,
            unit_public_key=key.point if key is not None else b"",
        )

    async def h5(self, bill_code: str, bill_no: str, check_code: str | None) -> str:
        bill = await self.bill(bill_code, bill_no, check_code)
        return render_html(await self.view(bill), "h5", links=True)

    async def pdf(self, bill_code: str, bill_no: str, check_code: str | None) -> bytes:
        bill = await self.bill(bill_code, bill_no, check_code)
        key = (bill.bill_code, bill.bill_no, bill.fiscal_signature, bill.qr_signature)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        view, export = await self.view(bill), await self.export(bill)
        # Layout takes tens of milliseconds of CPU: off the event loop.
        pdf = await asyncio.to_thread(render_pdf, view, export)
        self.cache.put(key, pdf)
        return pdf

    async def notice(self, bill_code: str, bill_no: str, check_code: str | None) -> bytes:
        bill = await self.bill(bill_code, bill_no, check_code)
        view = await self.view(bill, masked=True)
        return await asyncio.to_thread(render_notice, view)
