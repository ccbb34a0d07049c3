"""The five pipeline stages as plain classes: validate, reserve number, unit-sign,
fiscal countersign, archive.

Each stage takes and returns a whole batch. They hold their own connections
(asyncpg pools, gRPC channels) opened lazily in the event loop they run in, so
the same class runs inside a Ray actor or directly in a test. Ray itself is only
touched by actors.pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
from google.protobuf.message import DecodeError

from actors.unit_keys import UnitKeys
from clients.fiscal import CountersignResult, FiscalClient
from clients.signer import SignerClient
from config import keys
from config.tls import TlsFiles
from config.tuning import (
    DB_ATTEMPTS,
    DB_RETRY_FACTOR,
    DB_RETRY_FIRST_DELAY_S,
    KEY_FETCH_TIMEOUT_S,
    SIGNER_TIMEOUT_S,
)
from engine.breaker import BreakerState, CircuitBreaker
from engine.errors import EbillError, FailedPrecondition, InvalidArgument, Unavailable
from engine.model import BillInput, Catalog, UnitCatalog
from engine.pipeline import (
    Item,
    Work,
    check_platform_signatures,
    finish,
    map_work,
    take_countersignature,
)
from engine.prepare import Prepared, prepare
from engine.sm2 import VerifyingKey
from engine.validation import check
from protos.ebill.v1 import bill_pb2
from storage import archive as archive_store
from storage import bills as bill_store
from storage.catalog import load_units, unit_versions
from storage.db import connect_pool
from storage.errors import is_retryable, translate
from wire.bills import bill_from_pb

__all__ = [
    "ArchiveStage",
    "CountersignStage",
    "ReserveStage",
    "UnitSignStage",
    "ValidateStage",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


async def _with_db_retry(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a whole-transaction step again when the database failed in a way that
    left nothing written (connection loss, serialization failure)."""
    delay = DB_RETRY_FIRST_DELAY_S
    for attempt in range(DB_ATTEMPTS):
        try:
            return await fn()
        except Exception as exc:
            if attempt == DB_ATTEMPTS - 1 or not is_retryable(exc):
                log.exception("database step failed")
                raise translate(exc) from exc
            log.warning("database step failed (%s), retrying", type(exc).__name__)
            await asyncio.sleep(delay)
            delay *= DB_RETRY_FACTOR
    raise AssertionError("unreachable")


class _Timed:
    """Keeps simple per-stage counters a caller can read (metrics are scraped from
    the driver, which asks each stage for these)."""

    MAX_DURATIONS = 10_000

    def __init__(self) -> None:
        self.batches = 0
        self.items = 0
        self.busy_s = 0.0
        self.durations: list[float] = []

    def record(self, n: int, started: float) -> None:
        took = time.perf_counter() - started
        self.batches += 1
        self.items += n
        self.busy_s += took
        if len(self.durations) < self.MAX_DURATIONS:
            self.durations.append(took)

    def stats(self) -> dict[str, float]:
        return {"batches": self.batches, "items": self.items, "busy_s": self.busy_s}

    def drain_durations(self) -> list[float]:
        """Batch durations since the last call (for the driver's histograms)."""
        out, self.durations = self.durations, []
        return out


class _DbStage(_Timed):
    def __init__(self, database_url: str, pool_size: int = 4) -> None:
        super().__init__()
        self._url = database_url
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # application_name ebill-engine/ReserveStage...: pg_stat_activity
            # tells which stage holds each connection (the budget, docs/deploy.md).
            self._pool = await connect_pool(
                self._url, size=self._pool_size, migrate=False, role=type(self).__name__
            )
        return self._pool


class ValidateStage(_DbStage):
    """Checks each request against the rules and the unit's reference data.

    Each unit's catalogue (points, items, bill codes, pay channels, HIS mappings)
    is held here with the version it was loaded at; one indexed read per batch
    asks for the versions of the batch's units, and only a unit whose version
    moved (a catalogue change, an import, a sync) is loaded again. No query per bill.
    """

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url, pool_size=1)
        self._units: dict[str, UnitCatalog] = {}
        self.reloads = 0

    async def catalog(self, unit_codes: Collection[str] | None = None) -> Catalog:
        """The catalogue of ``unit_codes`` (every unit's when None: warming up)."""
        pool = await self.pool()

        async def fresh() -> dict[str, UnitCatalog]:
            async with pool.acquire() as conn:
                nonlocal unit_codes
                if unit_codes is None:
                    unit_codes = [r[0] for r in await conn.fetch("SELECT unit_code FROM units")]
                now = await unit_versions(conn, unit_codes)
                # A unit not yet known may be created at any time: ask for it too.
                stale = [
                    u for u, v in now.items() if u not in self._units or self._units[u].version != v
                ]
                return await load_units(conn, stale) if stale else {}

        loaded = await _with_db_retry(fresh)
        if loaded:
            self.reloads += 1
            self._units.update(loaded)
        return Catalog(units={u: self._units[u] for u in unit_codes or () if u in self._units})

    async def run(self, bills: Sequence[bytes]) -> list[Prepared | EbillError]:
        """Validate serialised ebill.v1.BillRequest messages.

        Requests arrive as protobuf bytes: parsing them here costs less than
        pickling domain objects across the process boundary.
        """
        started = time.perf_counter()
        decoded: list[BillInput | EbillError] = []
        for raw in bills:
            try:
                decoded.append(bill_from_pb(bill_pb2.BillRequest.FromString(raw)))
            except DecodeError:
                decoded.append(InvalidArgument("request is not a BillRequest message"))
        try:
            catalog = await self.catalog({b.unit_code for b in decoded if isinstance(b, BillInput)})
        except EbillError as exc:
            return [exc] * len(bills)
        out: list[Prepared | EbillError] = []
        for bill in decoded:
            if isinstance(bill, EbillError):
                out.append(bill)
                continue
            result = check(bill, catalog)
            out.append(
                InvalidArgument.from_errors(result) if isinstance(result, list) else prepare(result)
            )
        self.record(len(bills), started)
        return out


class ReserveStage(_DbStage):
    """Leases bill numbers and stores the bill rows, one transaction per batch."""

    def __init__(
        self, database_url: str, data_key_file: Path, outbox_grace_s: float = 30.0
    ) -> None:
        super().__init__(database_url)
        self._grace = timedelta(seconds=outbox_grace_s)
        # Seals the payer's data in the reserve transaction (storage.personal).
        self._ring = keys.read(data_key_file)

    async def run(self, items: Sequence[Prepared | EbillError], atomic: bool = False) -> list[Item]:
        """Reserve numbers; with ``atomic`` all items are reserved or none (a refund)."""
        started = time.perf_counter()
        valid = [(i, it) for i, it in enumerate(items) if isinstance(it, Prepared)]
        out: list[Item] = [
            it if isinstance(it, EbillError) else Unavailable("not reserved") for it in items
        ]
        if valid:
            pool = await self.pool()
            try:
                reserved = await _with_db_retry(
                    lambda: bill_store.reserve(
                        pool, valid, ring=self._ring, grace=self._grace, atomic=atomic
                    )
                )
            except EbillError as exc:
                reserved = dict.fromkeys((i for i, _ in valid), exc)
            for i, it in reserved.items():
                out[i] = it
        self.record(len(items), started)
        return out


class UnitSignStage(_Timed):
    """Has the hospital's signing server (HSM) sign the canonical bytes, one call per batch."""

    def __init__(
        self,
        signer_addr: str,
        key_id: str,
        timeout_s: float = SIGNER_TIMEOUT_S,
        tls: TlsFiles | None = None,
        database_url: str = "",
    ) -> None:
        super().__init__()
        self.signer = SignerClient(signer_addr, key_id, timeout_s, tls=tls)
        # With a database: each unit signs with its active certificate's key id.
        self._keys = UnitKeys(database_url) if database_url else None

    async def _sign(self, todo: Sequence[Work]) -> list[bytes]:
        units = {w.unit_code for w in todo}
        keys = await self._keys.key_ids(units) if self._keys else dict.fromkeys(units, "")
        groups: dict[str, list[int]] = {}
        for i, w in enumerate(todo):
            groups.setdefault(keys[w.unit_code], []).append(i)
        out: list[bytes] = [b""] * len(todo)
        for key_id, idx in groups.items():
            sigs = await self.signer.sign_batch([todo[i].canonical for i in idx], key_id=key_id)
            for i, sig in zip(idx, sigs, strict=True):
                out[i] = sig
        return out

    async def run(self, items: Sequence[Item]) -> list[Item]:
        started = time.perf_counter()
        todo = [w for w in items if isinstance(w, Work) and w.needs_unit_signature]
        if not todo:
            return list(items)
        try:
            signatures = await self._sign(todo)
            sigs = dict(zip((w.bill_id for w in todo), signatures, strict=True))
            out = map_work(
                items,
                lambda w: replace(w, unit_signature=sigs[w.bill_id]) if w.bill_id in sigs else w,
            )
        except EbillError as exc:
            log.warning("signing server failed: %s", exc)
            reason = f"signing server unavailable ({exc.code})"
            out = map_work(
                items, lambda w: replace(w, deferred=reason) if w.needs_unit_signature else w
            )
        self.record(len(todo), started)
        return out


class CountersignStage(_Timed):
    """Has the fiscal platform verify and countersign (监制), one call per batch."""

    def __init__(
        self,
        fiscal_addr: str,
        timeout_s: float = 3.0,
        signer_addr: str = "",
        key_id: str = "",
        tls: TlsFiles | None = None,
        signer_tls: TlsFiles | None = None,
        database_url: str = "",
    ) -> None:
        super().__init__()
        # Units with certificates (onboarding): a returned unit signature is
        # checked against their certificates' keys, not the default key.
        self._unit_keys = UnitKeys(database_url) if database_url else None
        # Inline issuance waits timeout_s for the platform; past it, bills go out
        # unit-signed and pending, and the recovery loop countersigns them later.
        self.fiscal = FiscalClient(fiscal_addr, timeout_s, tls=tls)
        self.breaker = CircuitBreaker(failure_threshold=3, cooldown_s=2.0, max_cooldown_s=30.0)
        # The unit's key, to check a unit signature the platform hands back.
        self.signer = SignerClient(signer_addr, key_id, tls=signer_tls) if signer_addr else None

    async def unit_key(self) -> VerifyingKey | None:
        if self.signer is None:
            return None
        try:
            return await self.signer.public_key()
        except EbillError as exc:
            log.warning("unit key unavailable: %s", exc)
            return None

    async def _cert_keys(
        self,
        todo: Sequence[Work],
        answers: Sequence[CountersignResult],
        sent: dict[tuple[str, str], bytes],
    ) -> dict[str, tuple[VerifyingKey, ...]]:
        """The certificate keys of units whose bills came back with another unit
        signature (a resumed bill); {} when none did."""
        if self._unit_keys is None:
            return {}
        differ = {
            (r.bill_code, r.bill_no)
            for r in answers
            if r.ok and r.unit_signature and r.unit_signature != sent.get((r.bill_code, r.bill_no))
        }
        units = {w.unit_code for w in todo if (w.bill_code, w.bill_no) in differ}
        if not units:
            return {}
        try:
            return await self._unit_keys.public_keys(units)
        except Exception as exc:  # unavailable keys: the default key decides
            log.warning("unit certificate keys unavailable: %s", exc)
            return {}

    def stats(self) -> dict[str, float]:
        out = super().stats()
        out["circuit_open"] = float(self.breaker.state is not BreakerState.CLOSED)
        return out

    async def run(self, items: Sequence[Item], timeout_s: float | None = None) -> list[Item]:
        started = time.perf_counter()
        todo = [w for w in items if isinstance(w, Work) and w.needs_countersign]
        if not todo:
            return list(items)
        if not self.breaker.allow():
            return map_work(
                items,
                lambda w: (
                    replace(w, deferred="fiscal platform circuit open")
                    if w.needs_countersign
                    else w
                ),
            )
        try:
            answers = await self.fiscal.countersign_batch(todo, timeout_s)
        except EbillError as exc:
            self.breaker.failure()
            log.warning("fiscal platform failed: %s (circuit %s)", exc, self.breaker.state)
            reason = f"fiscal platform unavailable ({exc.code})"
            out = map_work(
                items, lambda w: replace(w, deferred=reason) if w.needs_countersign else w
            )
            self.record(len(todo), started)
            return out
        self.breaker.success()
        results = {(r.bill_code, r.bill_no): r for r in answers}
        sent = {(w.bill_code, w.bill_no): w.unit_signature for w in todo}
        key: VerifyingKey | None = None
        if any(
            r.ok and r.unit_signature and r.unit_signature != sent.get((r.bill_code, r.bill_no))
            for r in answers
        ):
            key = await self.unit_key()
        cert_keys = await self._cert_keys(todo, answers, sent)

        def apply(w: Work) -> Item:
            r = results.get((w.bill_code, w.bill_no))
            if r is None or not w.needs_countersign:
                return w
            if not r.ok:
                return replace(
                    w,
                    deferred=f"fiscal platform rejected: {r.error_code} {r.error_message}",
                    rejected=True,
                    platform_refused=True,
                )
            return take_countersignature(
                w,
                unit_signature=r.unit_signature,
                fiscal_signature=r.fiscal_signature,
                countersigned_at=r.countersigned_at,
                unit_key=_cert_key(cert_keys.get(w.unit_code, ()), w.canonical, r.unit_signature)
                or key,
                qr_signature=r.qr_signature,
            )

        out = map_work(items, apply)
        self.record(len(todo), started)
        return out


class ArchiveStage(_DbStage):
    """Checks the countersignature and archives the final e-bills, one statement per batch."""

    def __init__(
        self,
        database_url: str,
        fiscal_addr: str,
        verify_fiscal: bool = True,
        pinned_key: bytes = b"",
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(database_url)
        self.fiscal = FiscalClient(fiscal_addr, KEY_FETCH_TIMEOUT_S, tls=tls)
        self._verify = verify_fiscal
        self._pinned = VerifyingKey(pinned_key) if pinned_key else None
        if self._pinned is None and verify_fiscal:
            log.warning(
                "EBILL_FISCAL_PUBLIC_KEY_FILE is not set: the fiscal platform's public key "
                "is fetched unauthenticated and trusted on first use; pin it in production"
            )

    async def fiscal_key(self) -> VerifyingKey:
        """The platform's countersigning key: the pinned one, once the platform has
        offered that same key (a platform offering another is refused, every time);
        unpinned, whatever the platform offers first (cached by the client)."""
        offered = await self.fiscal.public_key()
        if self._pinned is None:
            return offered
        if offered != self._pinned:
            log.error("fiscal platform offers key %s, pinned %s", offered, self._pinned)
            raise FailedPrecondition(
                "fiscal platform key refused: it differs from the pinned key "
                "(EBILL_FISCAL_PUBLIC_KEY_FILE)"
            )
        return self._pinned

    async def run(self, items: Sequence[Item]) -> list[Item]:
        started = time.perf_counter()
        if self._verify and any(isinstance(w, Work) and w.fiscal_signature for w in items):
            unavailable = "fiscal key unavailable"
            try:
                key: VerifyingKey | None = await self.fiscal_key()
            except FailedPrecondition as exc:
                key, unavailable = None, exc.message
            except EbillError as exc:
                log.warning("fiscal key unavailable: %s", exc)
                # Pinned, the platform's answer is not needed to check a signature.
                key = self._pinned

            def check_fiscal(w: Work) -> Item:
                return check_platform_signatures(w, key, unavailable)

            items = map_work(items, check_fiscal)
        out = map_work(items, finish)
        works = [w for w in out if isinstance(w, Work)]
        if works:
            pool = await self.pool()
            try:
                await _with_db_retry(lambda: archive_store.archive(pool, works))
            except EbillError as exc:
                out = [exc if isinstance(it, Work) else it for it in out]
        self.record(len(works), started)
        return out


def _cert_key(
    keys: Sequence[VerifyingKey], canonical: bytes, signature: bytes
) -> VerifyingKey | None:
    """The unit's certificate key ``signature`` verifies under (the first one
    when none does, so the check refuses it); None when the unit has none."""
    for k in keys:
        if k.verify(canonical, signature):
            return k
    return keys[0] if keys else None
