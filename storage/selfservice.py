"""Self-service retrieval in PostgreSQL (migration 0011): one-time codes,
sessions, and the payer's bills found by keyed digest (migration 0010)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from engine.sealing import KeyRing
from storage.personal import bill_aad

__all__ = [
    "Sends",
    "bills_of",
    "code_hash",
    "current_code",
    "drop_code",
    "latest_phone",
    "new_code",
    "note_attempt",
    "recent_sends",
    "session",
    "unit_name",
    "use_code",
    "wrong_try",
]


@dataclass(frozen=True, slots=True)
class Sends:
    phone_minute: int
    phone_hour: int
    ip_hour: int


async def unit_name(pool: asyncpg.Pool, unit_code: str) -> str | None:
    name = await pool.fetchval("SELECT unit_name FROM units WHERE unit_code = $1", unit_code)
    return None if name is None else str(name)


async def recent_sends(pool: asyncpg.Pool, phone_hash: bytes | None, ip: str) -> Sends:
    """Codes sent to a phone in the last minute and hour, and asked from ``ip``
    in the last hour (every engine sees the same counts: they are rows)."""
    row = await pool.fetchrow(
        "SELECT"
        " count(*) FILTER (WHERE phone_hash = $1 AND created_at > now() - interval '1 minute')"
        "   AS pm,"
        " count(*) FILTER (WHERE phone_hash = $1) AS ph,"
        " count(*) FILTER (WHERE ip = $2) AS ih"
        " FROM selfservice_codes WHERE created_at > now() - interval '1 hour'"
        " AND (phone_hash = $1 OR ip = $2)",
        phone_hash or b"",
        ip,
    )
    assert row is not None
    return Sends(int(row["pm"]), int(row["ph"]), int(row["ih"]))


async def note_attempt(pool: asyncpg.Pool, ip: str) -> None:
    """Count a request that sent nothing (no phone found) against its address."""
    await pool.execute(
        "INSERT INTO selfservice_codes (unit_code, phone_hash, lookup_kind, lookup_hash, ip,"
        " code_hash, expires_at, used_at) VALUES ('', ''::bytea, 'tel', ''::bytea, $1,"
        " ''::bytea, now(), now())",
        ip,
    )


async def new_code(
    pool: asyncpg.Pool,
    unit_code: str,
    phone_hash: bytes,
    lookup_kind: str,
    lookup_hash: bytes,
    ip: str,
    ttl: timedelta,
    hash_of: Callable[[int], bytes],
) -> int:
    """Store a code (its digest bound to its row id); earlier unused codes of
    the same lookup lapse, so only the latest one can be entered."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE selfservice_codes SET used_at = now() WHERE unit_code = $1"
            " AND lookup_kind = $2 AND lookup_hash = $3 AND used_at IS NULL",
            unit_code,
            lookup_kind,
            lookup_hash,
        )
        code_id = int(
            await conn.fetchval(
                "INSERT INTO selfservice_codes (unit_code, phone_hash, lookup_kind, lookup_hash,"
                " ip, code_hash, expires_at) VALUES ($1, $2, $3, $4, $5, ''::bytea,"
                " now() + $6::interval) RETURNING id",
                unit_code,
                phone_hash,
                lookup_kind,
                lookup_hash,
                ip,
                ttl,
            )
        )
        await conn.execute(
            "UPDATE selfservice_codes SET code_hash = $2 WHERE id = $1", code_id, hash_of(code_id)
        )
    return code_id


async def drop_code(pool: asyncpg.Pool, code_id: int) -> None:
    """A code that could not be sent: it does not count against the phone."""
    await pool.execute("DELETE FROM selfservice_codes WHERE id = $1", code_id)


async def current_code(
    pool: asyncpg.Pool, unit_code: str, lookup_kind: str, lookup_hash: bytes
) -> tuple[int, int] | None:
    """(id, wrong tries) of the live code of a lookup, if any."""
    row = await pool.fetchrow(
        "SELECT id, attempts FROM selfservice_codes WHERE unit_code = $1 AND lookup_kind = $2"
        " AND lookup_hash = $3 AND used_at IS NULL AND expires_at > now()"
        " ORDER BY id DESC LIMIT 1",
        unit_code,
        lookup_kind,
        lookup_hash,
    )
    return None if row is None else (int(row["id"]), int(row["attempts"]))


async def code_hash(pool: asyncpg.Pool, code_id: int) -> bytes:
    return bytes(
        await pool.fetchval("SELECT code_hash FROM selfservice_codes WHERE id = $1", code_id)
    )


async def wrong_try(pool: asyncpg.Pool, code_id: int) -> None:
    await pool.execute(
        "UPDATE selfservice_codes SET attempts = attempts + 1 WHERE id = $1", code_id
    )


async def use_code(
    pool: asyncpg.Pool, code_id: int, token_hash: bytes, unit_code: str, lookup_kind: str,
    lookup_hash: bytes, ttl: timedelta,
) -> None:  # fmt: skip
    """Spend the code and open a session, together (a code opens one session)."""
    async with pool.acquire() as conn, conn.transaction():
        spent = await conn.execute(
            "UPDATE selfservice_codes SET used_at = now() WHERE id = $1 AND used_at IS NULL",
            code_id,
        )
        if spent.endswith(" 0"):
            return
        await conn.execute(
            "INSERT INTO selfservice_sessions (token_hash, unit_code, lookup_kind, lookup_hash,"
            " expires_at) VALUES ($1, $2, $3, $4, now() + $5::interval)",
            token_hash,
            unit_code,
            lookup_kind,
            lookup_hash,
            ttl,
        )


async def session(
    pool: asyncpg.Pool, token_hash: bytes, unit_code: str
) -> tuple[str, bytes] | None:
    row = await pool.fetchrow(
        "SELECT lookup_kind, lookup_hash FROM selfservice_sessions WHERE token_hash = $1"
        " AND unit_code = $2 AND expires_at > now()",
        token_hash,
        unit_code,
    )
    return None if row is None else (str(row["lookup_kind"]), bytes(row["lookup_hash"]))


_BY = {"tel": "payer_tel_hash", "id_card": "payer_id_card_hash"}


async def bills_of(
    pool: asyncpg.Pool, unit_code: str, lookup_kind: str, lookup_hash: bytes, limit: int
) -> list[asyncpg.Record]:
    """The payer's issued, red-flushed and red bills of a unit, newest first."""
    column = _BY[lookup_kind]
    return list(
        await pool.fetch(
            "SELECT bill_code, bill_no, check_code, total_fen, issued_at, status, red_of"
            f" FROM bills WHERE unit_code = $1 AND {column} = $2"
            " AND status IN ('issued', 'red_flushed') ORDER BY issued_at DESC, id DESC"
            " LIMIT $3",
            unit_code,
            lookup_hash,
            limit,
        )
    )


async def latest_phone(
    pool: asyncpg.Pool, ring: KeyRing, unit_code: str, id_card_hash: bytes | None
) -> str:
    """The phone on the payer's latest bill with one (opened), or ''."""
    if id_card_hash is None:
        return ""
    row = await pool.fetchrow(
        "SELECT id, request_sealed FROM bills WHERE unit_code = $1 AND payer_id_card_hash = $2"
        " AND payer_tel_hash IS NOT NULL AND request_sealed IS NOT NULL"
        " ORDER BY issued_at DESC, id DESC LIMIT 1",
        unit_code,
        id_card_hash,
    )
    if row is None:
        return ""
    request = json.loads(ring.open(bytes(row["request_sealed"]), bill_aad("request", row["id"])))
    return str(request.get("payer", {}).get("tel", ""))
