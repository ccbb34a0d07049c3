"""Delivery outbox in PostgreSQL (migration 0011): jobs written by the archive
transaction, claimed by the delivery worker, their history, opt-outs, bound
accounts, templates, re-sends and the per-unit switch.

The archive statement enqueues with one INSERT ... SELECT per batch
(:func:`enqueue`): the jobs commit with the bill or not at all, and issuance
pays one statement per batch, never a call to a provider.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from engine.delivery import (
    Attempt,
    Channel,
    DeliveryBill,
    Job,
    JobStatus,
    Outcome,
)
from engine.model import CST
from engine.sealing import KeyRing
from engine.translog import LogEntry, content_digest
from storage.delivery_prefs import log_entry
from storage.personal import CARD, bill_aad
from storage.translog import append_entries

__all__ = [
    "ENQUEUE_SQL",
    "JobView",
    "Result",
    "claim_due",
    "enqueue",
    "expand",
    "history",
    "oldest_wait_s",
    "pending_count",
    "record",
    "resend_batch",
    "resend_bill",
]

# The archive transaction's whole share of delivery: its issued bills, of units
# that have not turned delivery off, into the inbox. A bill archived twice
# (replayed, resumed) is there once. Which channels a bill has needs its sealed
# payer data opened, which the worker does (:func:`expand`), off issuance's path.
ENQUEUE_SQL = (
    "INSERT INTO delivery_inbox (bill_id) SELECT b.id FROM bills b"
    " WHERE b.id = ANY($1::bigint[]) AND b.status = 'issued'"
    " AND NOT EXISTS (SELECT 1 FROM delivery_units d"
    "   WHERE d.unit_code = b.unit_code AND NOT d.enabled)"
    " ON CONFLICT (bill_id) DO NOTHING"
)


async def enqueue(conn: asyncpg.Connection, bill_ids: Sequence[int]) -> None:
    """Queue the delivery of ``bill_ids`` in the caller's (archive) transaction."""
    if bill_ids:
        await conn.execute(ENQUEUE_SQL, list(bill_ids))


def _payer(ring: KeyRing, r: asyncpg.Record) -> dict[str, Any]:
    """The payer of a bills row (``bill_id``, ``request_sealed``, ``request``):
    opened, or as stored by a row not yet sealed."""
    if r["request_sealed"] is not None:
        request = json.loads(
            ring.open(bytes(r["request_sealed"]), bill_aad("request", r["bill_id"]))
        )
    else:
        request = r["request"] or {}
    payer = request.get("payer") if isinstance(request, dict) else None
    return payer if isinstance(payer, dict) else {}


def _card_hash(ring: KeyRing, r: asyncpg.Record, payer: dict[str, Any]) -> bytes | None:
    h = r["payer_card_hash"]
    return bytes(h) if h is not None else ring.index(str(payer.get("card_no", "")), CARD)


_JOB_SOURCE = (
    "SELECT b.id AS bill_id, b.unit_code, b.place_code, b.request, b.request_sealed,"
    " b.payer_card_hash FROM bills b"
)


async def _make_jobs(
    conn: asyncpg.Connection,
    ring: KeyRing,
    rows: Sequence[asyncpg.Record],
    only: frozenset[str] | None = None,
) -> int:
    """A job per channel each bill's payer has (a phone: SMS; an e-mail; a WeChat
    or Alipay account bound to the visit card), ``only`` those channels if given;
    jobs that exist are left alone. Returns how many were made."""
    wanted: list[tuple[int, str, str, str]] = []
    cards: dict[int, bytes] = {}
    for r in rows:
        payer = _payer(ring, r)
        for channel, key in ((Channel.SMS, "tel"), (Channel.EMAIL, "email")):
            if str(payer.get(key, "")).strip():
                wanted.append((r["bill_id"], r["unit_code"], r["place_code"], channel.value))
        card = _card_hash(ring, r, payer)
        if card is not None:
            cards[r["bill_id"]] = card
    if cards:
        by_id = {r["bill_id"]: r for r in rows}
        bound = await conn.fetch(
            "SELECT k.bill_id, a.channel FROM delivery_accounts a"
            " JOIN unnest($1::bigint[], $2::text[], $3::bytea[]) AS k(bill_id, u, card)"
            " ON a.unit_code = k.u AND a.card_hash = k.card",
            list(cards),
            [by_id[i]["unit_code"] for i in cards],
            list(cards.values()),
        )
        for b in bound:
            r = by_id[b["bill_id"]]
            wanted.append((r["bill_id"], r["unit_code"], r["place_code"], b["channel"]))
    if only is not None:
        wanted = [w for w in wanted if w[3] in only]
    if not wanted:
        return 0
    status = await conn.execute(
        "INSERT INTO delivery_jobs (bill_id, unit_code, place_code, channel)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])"
        " ON CONFLICT (bill_id, channel) DO NOTHING",
        [w[0] for w in wanted],
        [w[1] for w in wanted],
        [w[2] for w in wanted],
        [w[3] for w in wanted],
    )
    return int(status.rsplit(" ", 1)[-1])


async def expand(pool: asyncpg.Pool, ring: KeyRing, limit: int) -> int:
    """Turn up to ``limit`` bills of the inbox into their jobs, in one
    transaction: a crash half way leaves them in the inbox. Returns how many
    bills were taken."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "WITH taken AS (DELETE FROM delivery_inbox WHERE bill_id IN ("
            "  SELECT bill_id FROM delivery_inbox ORDER BY bill_id LIMIT $1"
            "  FOR UPDATE SKIP LOCKED) RETURNING bill_id) "
            + _JOB_SOURCE
            + " JOIN taken t ON t.bill_id = b.id",
            limit,
        )
        if rows:
            await _make_jobs(conn, ring, rows)
        return len(rows)


def _bill(ring: KeyRing, r: asyncpg.Record) -> DeliveryBill:
    payer = _payer(ring, r)
    return DeliveryBill(
        bill_id=r["bill_id"],
        unit_code=r["unit_code"],
        unit_name=r["unit_name"],
        place_code=r["place_code"],
        bill_code=r["bill_code"],
        bill_no=r["bill_no"],
        check_code=r["check_code"],
        total_fen=r["total_fen"],
        issued_at=r["issued_at"],
        payer_name=str(payer.get("name", "")),
        tel=str(payer.get("tel", "")),
        email=str(payer.get("email", "")),
        wechat=r["wechat"],
        alipay=r["alipay"],
        red_of=r["red_of"],
    )


_BILL_COLUMNS = (
    " b.id AS bill_id, b.unit_code, u.unit_name, b.place_code, b.bill_code, b.bill_no,"
    " b.check_code, b.total_fen, b.issued_at, b.request, b.request_sealed,"
    " coalesce((SELECT a.account FROM delivery_accounts a WHERE a.unit_code = b.unit_code"
    "   AND a.card_hash = b.payer_card_hash AND a.channel = 'wechat'), '') AS wechat,"
    " coalesce((SELECT a.account FROM delivery_accounts a WHERE a.unit_code = b.unit_code"
    "   AND a.card_hash = b.payer_card_hash AND a.channel = 'alipay'), '') AS alipay,"
    " coalesce(o.bill_code || '/' || o.bill_no, '') AS red_of"
)


async def claim_due(pool: asyncpg.Pool, ring: KeyRing, limit: int, lease: timedelta) -> list[Job]:
    """Take up to ``limit`` jobs that are due, with their bills (payer opened).
    Claiming pushes their next attempt ``lease`` ahead, so engines sharing the
    database never send the same job side by side, and a job whose engine died
    is taken again."""
    rows = await pool.fetch(
        "WITH due AS ("
        "  SELECT id FROM delivery_jobs WHERE status = 'pending' AND next_attempt_at <= now()"
        "  ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " , claimed AS ("
        "  UPDATE delivery_jobs j SET next_attempt_at = now() + $2::interval FROM due"
        "  WHERE j.id = due.id RETURNING j.id, j.bill_id, j.channel, j.attempts)"
        " SELECT c.id AS job_id, c.channel, c.attempts," + _BILL_COLUMNS + " FROM claimed c"
        " JOIN bills b ON b.id = c.bill_id JOIN units u ON u.unit_code = b.unit_code"
        " LEFT JOIN bills o ON o.id = b.red_of ORDER BY c.id",
        limit,
        lease,
    )
    return [Job(r["job_id"], Channel(r["channel"]), r["attempts"], _bill(ring, r)) for r in rows]


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one try of a job, as the worker records it."""

    job: Job
    outcome: Outcome
    provider_id: str = ""
    error: str = ""
    address: str = ""
    # For RETRY: seconds until the next try.
    retry_in_s: float = 0.0


_STATUS_OF = {
    Outcome.SENT: JobStatus.SENT,
    Outcome.RETRY: JobStatus.PENDING,
    Outcome.FAILED: JobStatus.FAILED,
    Outcome.SKIPPED: JobStatus.SKIPPED,
}


async def record(pool: asyncpg.Pool, results: Sequence[Result], principal: str) -> None:
    """Store a pass's outcomes in one transaction: job statuses, a history row
    each, and a transparency-log leaf per unit committing to the messages sent
    or given up on (what a payer who says he was never told can be shown)."""
    if not results:
        return
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE delivery_jobs j SET status = u.status,"
            " attempts = j.attempts + CASE WHEN u.outcome = 'sent' THEN 0 ELSE 1 END,"
            " next_attempt_at = now() + u.retry_s * interval '1 second',"
            " last_error = u.err, provider_id = u.pid,"
            " sent_at = CASE WHEN u.outcome = 'sent' THEN now() ELSE j.sent_at END"
            " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],"
            "   $6::float8[]) AS u(id, status, outcome, err, pid, retry_s)"
            " WHERE j.id = u.id AND j.status = 'pending'",
            [r.job.id for r in results],
            [_STATUS_OF[r.outcome].value for r in results],
            [r.outcome.value for r in results],
            [r.error for r in results],
            [r.provider_id for r in results],
            [r.retry_in_s for r in results],
        )
        await conn.copy_records_to_table(
            "delivery_attempts",
            records=[
                (r.job.id, now, r.outcome.value, r.provider_id, r.error, r.address) for r in results
            ],
            columns=("job_id", "at", "outcome", "provider_id", "error", "address"),
        )
        # One leaf per unit and pass, committing to every message sent or given
        # up on in it (bill, channel, masked address, provider id, error): a leaf
        # per message would double the log that issuance's own leaves make.
        final = [r for r in results if r.outcome in (Outcome.SENT, Outcome.FAILED)]
        units = sorted({r.job.bill.unit_code for r in final})
        await append_entries(
            conn,
            [
                LogEntry(
                    op="delivery.sent",
                    principal=principal,
                    unit_code=unit,
                    ref=f"{len(mine)} messages",
                    occurred_at=now,
                    content_digest=content_digest(mine),
                )
                for unit in units
                if (
                    mine := [
                        [f"{r.job.bill.bill_code}/{r.job.bill.bill_no}", r.job.channel.value,
                         r.outcome.value, r.address, r.provider_id, r.error]
                        for r in final
                        if r.job.bill.unit_code == unit
                    ]
                )
            ],
        )  # fmt: skip


async def oldest_wait_s(pool: asyncpg.Pool) -> float:
    """How long the longest-waiting bill or due job has waited (0: none)."""
    return float(
        await pool.fetchval(
            "SELECT greatest(0,"
            " extract(epoch FROM now() - (SELECT created_at FROM delivery_inbox"
            "   ORDER BY bill_id LIMIT 1)),"
            " extract(epoch FROM now() - (SELECT next_attempt_at FROM delivery_jobs"
            "   WHERE status = 'pending' AND next_attempt_at <= now()"
            "   ORDER BY next_attempt_at LIMIT 1)))"
        )
    )


async def pending_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM delivery_jobs WHERE status = 'pending'"))


@dataclass(frozen=True, slots=True)
class JobView:
    """A bill's delivery on one channel, with its history."""

    channel: Channel
    status: JobStatus
    attempts: int
    provider_id: str
    last_error: str
    created_at: datetime
    sent_at: datetime | None
    history: tuple[Attempt, ...]


async def history(pool: asyncpg.Pool, bill_id: int) -> list[JobView]:
    rows = await pool.fetch(
        "SELECT j.*, coalesce(array_agg(ROW(a.at, a.outcome, a.provider_id, a.error,"
        " a.address) ORDER BY a.at, a.id) FILTER (WHERE a.id IS NOT NULL), '{}') AS tries"
        " FROM delivery_jobs j LEFT JOIN delivery_attempts a ON a.job_id = j.id"
        " WHERE j.bill_id = $1 GROUP BY j.id ORDER BY j.channel",
        bill_id,
    )
    return [
        JobView(
            channel=Channel(r["channel"]),
            status=JobStatus(r["status"]),
            attempts=r["attempts"],
            provider_id=r["provider_id"],
            last_error=r["last_error"],
            created_at=r["created_at"],
            sent_at=r["sent_at"],
            history=tuple(Attempt(t[0], Outcome(t[1]), t[2], t[3], t[4]) for t in r["tries"]),
        )
        for r in rows
    ]


async def resend_bill(
    pool: asyncpg.Pool, ring: KeyRing, bill_id: int, channels: Sequence[Channel], principal: str
) -> int:
    """Send a bill again on ``channels`` (every channel it has when empty): a new
    round for its jobs, and a job for a channel it has gained since (an account
    bound to the card). Returns how many jobs were queued."""
    wanted = [c.value for c in channels] or [c.value for c in Channel]
    async with pool.acquire() as conn, conn.transaction():
        reset = await conn.fetch(
            "UPDATE delivery_jobs SET status = 'pending', attempts = 0, next_attempt_at = now(),"
            " last_error = '' WHERE bill_id = $1 AND channel = ANY($2::text[]) RETURNING channel",
            bill_id,
            wanted,
        )
        rows = await conn.fetch(_JOB_SOURCE + " WHERE b.id = $1", bill_id)
        made = await _make_jobs(conn, ring, rows, frozenset(wanted)) if rows else 0
        bill = await conn.fetchrow(
            "SELECT unit_code, bill_code || '/' || bill_no AS ref FROM bills WHERE id = $1",
            bill_id,
        )
        assert bill is not None
        await append_entries(
            conn,
            [
                log_entry("delivery.resend", principal, bill["unit_code"], bill["ref"],
                          {"channels": sorted(wanted)})
            ],
        )  # fmt: skip
    return len(reset) + made


async def resend_batch(
    pool: asyncpg.Pool,
    unit_code: str,
    principal: str,
    *,
    day_from: date | None = None,
    day_to: date | None = None,
    place_code: str = "",
    statuses: Sequence[JobStatus] = (),
    channels: Sequence[Channel] = (),
) -> int:
    """Start a new round for a unit's jobs by day of creation (China time,
    inclusive), issuing point, status and channel. Returns how many."""
    start = datetime.combine(day_from, time(), CST) if day_from else None
    end = datetime.combine(day_to + timedelta(days=1), time(), CST) if day_to else None
    async with pool.acquire() as conn, conn.transaction():
        count = await conn.fetchval(
            "WITH r AS (UPDATE delivery_jobs SET status = 'pending', attempts = 0,"
            "  next_attempt_at = now(), last_error = ''"
            "  WHERE unit_code = $1 AND ($2::timestamptz IS NULL OR created_at >= $2)"
            "  AND ($3::timestamptz IS NULL OR created_at < $3)"
            "  AND ($4 = '' OR place_code = $4)"
            "  AND (cardinality($5::text[]) = 0 OR status = ANY($5::text[]))"
            "  AND (cardinality($6::text[]) = 0 OR channel = ANY($6::text[]))"
            "  RETURNING 1) SELECT count(*) FROM r",
            unit_code,
            start,
            end,
            place_code,
            [s.value for s in statuses],
            [c.value for c in channels],
        )
        await append_entries(
            conn,
            [
                log_entry("delivery.resend", principal, unit_code, place_code or unit_code,
                     {"from": str(day_from or ""), "to": str(day_to or ""), "place": place_code,
                      "statuses": [s.value for s in statuses],
                      "channels": [c.value for c in channels], "count": int(count)})
            ],
        )  # fmt: skip
    return int(count)
