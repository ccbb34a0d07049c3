"""The sealed columns of payer data: what is sealed where, under which AAD, and
the re-seal of rows written in plaintext or under an older key.

Sealed with engine.sealing (docs/personal-data.md):

- ``bills.request_sealed``: the request as stored (JSON), every payer field in it;
- ``bills.canonical_sealed``: the canonical bytes the signatures are over, opened
  byte for byte (they name the payer too);
- ``offline_bills.request_sealed``: the BillRequest message as received.

The AAD names the table, the column and the row (a bill by its id, an offline
bill by unit and serial), so a sealed value moved to another row does not open.
``bills.payer_*_hash`` are keyed digests for exact-match search.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from engine.sealing import KeyRing
from engine.translog import content_digest

__all__ = [
    "CARD",
    "ID_CARD",
    "NAME",
    "TEL",
    "ResealReport",
    "SealedBill",
    "bill_aad",
    "key_counts",
    "offline_aad",
    "open_canonical",
    "open_offline",
    "open_request",
    "reseal",
    "seal_bill",
    "seal_offline",
]

log = logging.getLogger(__name__)

# Purposes of the search digests (engine.sealing.KeyRing.index).
ID_CARD = "id_card"
TEL = "tel"
CARD = "card"
NAME = "name"


def bill_aad(column: str, bill_id: int) -> bytes:
    return f"ebill/bills.{column}/{bill_id}".encode()


def offline_aad(unit_code: str, bus_no: str) -> bytes:
    return f"ebill/offline_bills.request/{unit_code}\x00{bus_no}".encode()


@dataclass(frozen=True, slots=True)
class SealedBill:
    """The sealed and digest columns of one bills row."""

    request_sealed: bytes
    canonical_sealed: bytes
    payer_id_card_hash: bytes | None
    payer_tel_hash: bytes | None
    payer_card_hash: bytes | None
    payer_name_hash: bytes | None = None


def _request_bytes(request: dict[str, Any]) -> bytes:
    return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()


def seal_bill(
    ring: KeyRing,
    bill_id: int,
    request: dict[str, Any],
    canonical: bytes,
    *,
    id_card: str,
    tel: str,
    card: str,
    name: str = "",
) -> SealedBill:
    return SealedBill(
        ring.seal(_request_bytes(request), bill_aad("request", bill_id)),
        ring.seal(canonical, bill_aad("canonical", bill_id)),
        ring.index(id_card, ID_CARD),
        ring.index(tel, TEL),
        ring.index(card, CARD),
        name_digest(ring, name),
    )


# The middle dots people type inside names (买买提·艾力): Latin, katakana,
# bullet, hyphenation point, full stop; one of them stands for all.
_NAME_DOTS = str.maketrans({"\u30fb": "\u00b7", "\u2022": "\u00b7", "\u2027": "\u00b7",
                            "\uff0e": "\u00b7", ".": "\u00b7", "\u2219": "\u00b7"})  # fmt: skip


def normalise_name(name: str) -> str:
    """A payer name as it is indexed: NFKC (full-width letters to ASCII), no
    white space of any kind (a HIS pads or splits names), one middle dot; the
    index then upper-cases it, so Latin names match in either case."""
    folded = unicodedata.normalize("NFKC", name).translate(_NAME_DOTS)
    return "".join(folded.split())


def name_digest(ring: KeyRing, name: str) -> bytes | None:
    """The keyed digest of a payer name (None for no name): what
    ``bills.payer_name_hash`` holds and a search by name compares with."""
    return ring.index(normalise_name(name), NAME)


def open_request(ring: KeyRing, row: asyncpg.Record) -> dict[str, Any]:
    """The stored request of a bills row (``id``, ``request_sealed``)."""
    raw = ring.open(bytes(row["request_sealed"]), bill_aad("request", row["id"]))
    value: dict[str, Any] = json.loads(raw)
    return value


def open_canonical(ring: KeyRing, row: asyncpg.Record) -> bytes:
    """The canonical bytes of a bills row (``id``, ``canonical_sealed``), as signed."""
    return ring.open(bytes(row["canonical_sealed"]), bill_aad("canonical", row["id"]))


def seal_offline(ring: KeyRing, unit_code: str, bus_no: str, request: bytes) -> bytes:
    return ring.seal(request, offline_aad(unit_code, bus_no))


def open_offline(ring: KeyRing, row: asyncpg.Record) -> bytes:
    """The BillRequest of an offline_bills row (``unit_code``, ``bus_no``, ``request_sealed``)."""
    return ring.open(bytes(row["request_sealed"]), offline_aad(row["unit_code"], row["bus_no"]))


def _payer(request: dict[str, Any]) -> dict[str, Any]:
    payer = request.get("payer")
    return payer if isinstance(payer, dict) else {}


@dataclass(frozen=True, slots=True)
class ResealReport:
    """What one re-seal did: rows sealed from plaintext, and sealed rows sealed
    again under the active key (every sealed row with ``reindex``)."""

    plain_sealed: int = 0
    rekeyed: int = 0
    offline_plain_sealed: int = 0
    offline_rekeyed: int = 0
    # Values of the other sealed columns re-sealed (storage.sealed_columns), per column.
    others: dict[str, int] = field(default_factory=dict)


async def key_counts(pool: asyncpg.Pool) -> dict[str, dict[int, int]]:
    """Rows by the id of the key their request is sealed under, per table (0:
    rows not yet sealed): a retired key may leave the ring once no row names it."""
    out: dict[str, dict[int, int]] = {}
    for table in ("bills", "offline_bills"):
        rows = await pool.fetch(
            "SELECT coalesce(get_byte(request_sealed, 1) * 256 + get_byte(request_sealed, 2), 0)"
            f" AS key_id, count(*) AS n FROM {table} GROUP BY 1 ORDER BY 1"
        )
        out[table] = {int(r["key_id"]): int(r["n"]) for r in rows}
    return out


# Rows still in plaintext, or (with $2, rekey) under a key other than the active
# one (the key id is bytes 1-2 of a blob), or all of them ($4, reindex).
_BILLS_DUE = (
    "SELECT id, request, canonical, request_sealed, canonical_sealed FROM bills"
    " WHERE id > $1 AND (request_sealed IS NULL OR ($2 AND ("
    "  substring(request_sealed FROM 2 FOR 2) <> $3"
    "  OR substring(canonical_sealed FROM 2 FOR 2) <> $3 OR $4)))"
    " ORDER BY id LIMIT $5 FOR UPDATE"
)


def _reseal_bill(ring: KeyRing, r: asyncpg.Record) -> tuple[Any, ...]:
    if r["request_sealed"] is None:
        request = dict(r["request"])
        canonical = bytes(r["canonical"])
    else:
        request = open_request(ring, r)
        canonical = open_canonical(ring, r)
    payer = _payer(request)
    s = seal_bill(
        ring,
        r["id"],
        request,
        canonical,
        id_card=str(payer.get("id_card_no", "")),
        tel=str(payer.get("tel", "")),
        card=str(payer.get("card_no", "")),
        name=str(payer.get("name", "")),
    )
    return (
        r["id"], s.request_sealed, s.canonical_sealed, s.payer_id_card_hash, s.payer_tel_hash,
        s.payer_card_hash, s.payer_name_hash,
    )  # fmt: skip


async def _reseal_bills(
    pool: asyncpg.Pool,
    ring: KeyRing,
    batch: int,
    rekey: bool,
    reindex: bool,
    progress: Callable[[int], None],
) -> tuple[int, int]:
    active = ring.active.to_bytes(2, "big")
    after, plain, rekeyed = 0, 0, 0
    while True:
        # One transaction per batch: the rows locked, sealed, their plaintext
        # cleared; an interrupted re-seal is resumed by running it again.
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_BILLS_DUE, after, rekey, active, reindex, batch)
            if not rows:
                return plain, rekeyed
            await conn.executemany(
                "UPDATE bills SET request_sealed = $2, canonical_sealed = $3,"
                " payer_id_card_hash = $4, payer_tel_hash = $5, payer_card_hash = $6,"
                " payer_name_hash = $7, payer_name = NULL, payer_id_card_no = NULL,"
                " payer_card_no = NULL, payer_tel = NULL, request = NULL, canonical = NULL"
                " WHERE id = $1",
                [_reseal_bill(ring, r) for r in rows],
            )
        n_plain = sum(1 for r in rows if r["request_sealed"] is None)
        plain += n_plain
        rekeyed += len(rows) - n_plain
        after = rows[-1]["id"]
        progress(len(rows))


async def _reseal_offline(
    pool: asyncpg.Pool, ring: KeyRing, batch: int, rekey: bool, progress: Callable[[int], None]
) -> tuple[int, int]:
    active = ring.active.to_bytes(2, "big")
    after, plain, rekeyed = 0, 0, 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, unit_code, bus_no, request, request_sealed FROM offline_bills"
                " WHERE id > $1 AND (request_sealed IS NULL"
                "  OR ($2 AND substring(request_sealed FROM 2 FOR 2) <> $3))"
                " ORDER BY id LIMIT $4 FOR UPDATE",
                after,
                rekey,
                active,
                batch,
            )
            if not rows:
                return plain, rekeyed
            updates = []
            for r in rows:
                raw = bytes(r["request"]) if r["request_sealed"] is None else open_offline(ring, r)
                updates.append((r["id"], seal_offline(ring, r["unit_code"], r["bus_no"], raw)))
            await conn.executemany(
                "UPDATE offline_bills SET request_sealed = $2, request = NULL WHERE id = $1",
                updates,
            )
            plain_ids = [r["id"] for r in rows if r["request_sealed"] is None]
            if plain_ids:
                await _redact_log(conn, plain_ids)
        n_plain = sum(1 for r in rows if r["request_sealed"] is None)
        plain += n_plain
        rekeyed += len(rows) - n_plain
        after = rows[-1]["id"]
        progress(len(rows))


async def _redact_log(conn: asyncpg.Connection, offline_ids: list[int]) -> None:
    """Before migration 0010 the transparency log's trigger copied each offline
    bill row, its plaintext request included, into the entry's content. The
    entry keeps its content digest (what the leaf commits to, computed now if not
    yet sequenced) and loses the content: the log still verifies, and the
    plaintext is gone (docs/personal-data.md)."""
    rows = await conn.fetch(
        "SELECT id, content, content_digest FROM log_entries"
        " WHERE ref = ANY($1::text[]) AND content ->> 'request' IS NOT NULL",
        [f"offline_bills:{i}" for i in offline_ids],
    )
    await conn.executemany(
        "UPDATE log_entries SET content_digest = $2, content = NULL WHERE id = $1",
        [
            (
                r["id"],
                bytes(r["content_digest"])
                if r["content_digest"] is not None
                else content_digest(r["content"]),
            )
            for r in rows
        ],
    )


async def reseal(
    pool: asyncpg.Pool,
    ring: KeyRing,
    *,
    batch: int = 500,
    rekey: bool = True,
    reindex: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> ResealReport:
    """Seal every row still in plaintext (rows from before migration 0010) and,
    with ``rekey``, every value under a key other than the active one, under the
    active key; with ``reindex`` reseal every row and recompute every search
    digest (after the index key changed). The engine's start-up runs it without
    ``rekey`` (cheap when nothing is in plaintext: one index probe).

    Safe beside a serving engine (rows are locked batch by batch, and a bill's
    row is only read through the ring, which opens old and new keys alike) and
    safe to interrupt and run again. When no plaintext row is left the
    constraints of migration 0010 are validated, so PostgreSQL itself then
    guarantees that no row holds plaintext.
    """
    rekey = rekey or reindex
    plain, rekeyed = await _reseal_bills(pool, ring, batch, rekey, reindex, progress)
    off_plain, off_rekeyed = await _reseal_offline(pool, ring, batch, rekey, progress)
    # Validating scans the table once; after that PostgreSQL checks every row
    # written, so it is done once, by the first re-seal that leaves no plaintext.
    for table, constraint in (("bills", "bills_sealed"), ("offline_bills", "offline_bills_sealed")):
        if not await pool.fetchval(
            "SELECT convalidated FROM pg_constraint WHERE conname = $1", constraint
        ):
            await pool.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}")
    report = ResealReport(plain, rekeyed, off_plain, off_rekeyed)
    if plain or off_plain:
        log.warning(
            "sealed %d bills and %d offline bills stored in plaintext; their old row "
            "versions stay in the table files until VACUUM FULL (docs/personal-data.md)",
            plain,
            off_plain,
        )
    return report
