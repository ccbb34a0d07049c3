"""Delivery outbox in PostgreSQL (migration 0011): jobs written by the archive
transaction, claimed by the delivery worker, their history, opt-outs, bound
accounts, templates, re-sends and the per-unit switch.

The archive statement enqueues with one INSERT ... SELECT per batch
(:func:`enqueue`): the jobs commit with the bill or not at all, and issuance
pays one statement per batch, never a call to a provider.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType

import asyncpg

from engine.delivery import (
    Attempt,
    Channel,
    DeliveryBill,
    Job,
    JobStatus,
    MessageKind,
    Outcome,
    Template,
)
from engine.model import CST
from engine.translog import LogEntry, content_digest
from storage.translog import append_entries

__all__ = [
    "ENQUEUE_SQL",
    "JobView",
    "Result",
    "bind_account",
    "claim_due",
    "enqueue",
    "history",
    "opt_out",
    "opted_out",
    "pending_count",
    "record",
    "resend_batch",
    "resend_bill",
    "set_template",
    "set_unit_enabled",
    "templates_of",
]

# Which channels a bill has, as SQL over the bill row ``b``. With sealed personal
# data (wt-pii) this is the one place that says where a phone or email lives.
_CHANNELS_OF_BILL = (
    "(VALUES ('sms', b.payer_tel <> ''),"
    " ('email', coalesce(b.request->'payer'->>'email', '') <> ''),"
    " ('wechat', b.payer_card_no <> '' AND EXISTS (SELECT 1 FROM delivery_accounts a"
    "   WHERE a.unit_code = b.unit_code AND a.card_no = b.payer_card_no"
    "   AND a.channel = 'wechat')),"
    " ('alipay', b.payer_card_no <> '' AND EXISTS (SELECT 1 FROM delivery_accounts a"
    "   WHERE a.unit_code = b.unit_code AND a.card_no = b.payer_card_no"
    "   AND a.channel = 'alipay'))) AS c(channel, wanted)"
)

# One job per archived bill and channel. Only bills now issued (an ordinary bill
# or a red bill) of units that have not turned delivery off; a bill archived
# twice (replayed, resumed) keeps its jobs.
ENQUEUE_SQL = (
    "INSERT INTO delivery_jobs (bill_id, unit_code, place_code, channel)"
    " SELECT b.id, b.unit_code, b.place_code, c.channel FROM bills b"
    " CROSS JOIN LATERAL " + _CHANNELS_OF_BILL + " WHERE b.id = ANY($1::bigint[])"
    " AND b.status = 'issued' AND c.wanted AND NOT EXISTS (SELECT 1 FROM delivery_units d"
    "   WHERE d.unit_code = b.unit_code AND NOT d.enabled)"
    " ON CONFLICT (bill_id, channel) DO NOTHING"
)


async def enqueue(conn: asyncpg.Connection, bill_ids: Sequence[int]) -> None:
    """Queue the delivery of ``bill_ids`` in the caller's (archive) transaction."""
    if bill_ids:
        await conn.execute(ENQUEUE_SQL, list(bill_ids))


async def set_unit_enabled(
    pool: asyncpg.Pool, unit_code: str, enabled: bool, principal: str = ""
) -> None:
    """Turn delivery on or off for a unit's bills archived from now on."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO delivery_units (unit_code, enabled) VALUES ($1, $2)"
            " ON CONFLICT (unit_code) DO UPDATE SET enabled = $2, updated_at = now()",
            unit_code,
            enabled,
        )
        await append_entries(
            conn, [_log("delivery.unit", principal, unit_code, unit_code, {"enabled": enabled})]
        )


def _bill(r: asyncpg.Record) -> DeliveryBill:
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
        payer_name=r["payer_name"],
        tel=r["payer_tel"],
        email=r["email"],
        wechat=r["wechat"],
        alipay=r["alipay"],
        red_of=r["red_of"],
    )


_BILL_COLUMNS = (
    " b.id AS bill_id, b.unit_code, u.unit_name, b.place_code, b.bill_code, b.bill_no,"
    " b.check_code, b.total_fen, b.issued_at, b.payer_name, b.payer_tel,"
    " coalesce(b.request->'payer'->>'email', '') AS email,"
    " coalesce((SELECT a.account FROM delivery_accounts a WHERE a.unit_code = b.unit_code"
    "   AND a.card_no = b.payer_card_no AND a.channel = 'wechat'), '') AS wechat,"
    " coalesce((SELECT a.account FROM delivery_accounts a WHERE a.unit_code = b.unit_code"
    "   AND a.card_no = b.payer_card_no AND a.channel = 'alipay'), '') AS alipay,"
    " coalesce(o.bill_code || '/' || o.bill_no, '') AS red_of"
)


async def claim_due(pool: asyncpg.Pool, limit: int, lease: timedelta) -> list[Job]:
    """Take up to ``limit`` jobs that are due, with their bills. Claiming pushes
    their next attempt ``lease`` ahead, so engines sharing the database never
    send the same job side by side, and a job whose engine died is taken again."""
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
    return [Job(r["job_id"], Channel(r["channel"]), r["attempts"], _bill(r)) for r in rows]


async def opted_out(
    pool: asyncpg.Pool, wanted: Iterable[tuple[str, Channel, str]]
) -> set[tuple[str, Channel, str]]:
    """Which of (unit_code, channel, normalised address) opted out."""
    keys = sorted(set(wanted))
    if not keys:
        return set()
    rows = await pool.fetch(
        "SELECT o.unit_code, o.channel, o.address FROM delivery_optouts o"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(u, c, a)"
        " ON o.unit_code = k.u AND o.channel = k.c AND o.address = k.a",
        [k[0] for k in keys],
        [k[1].value for k in keys],
        [k[2] for k in keys],
    )
    return {(r["unit_code"], Channel(r["channel"]), r["address"]) for r in rows}


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
    each, and a transparency-log leaf for each message sent or given up on (what
    a payer who says he was never told can be shown)."""
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
        await append_entries(
            conn,
            [
                LogEntry(
                    op=f"delivery.{r.outcome.value}",
                    principal=principal,
                    unit_code=r.job.bill.unit_code,
                    ref=f"{r.job.bill.bill_code}/{r.job.bill.bill_no}",
                    occurred_at=now,
                    content_digest=content_digest(
                        {
                            "channel": r.job.channel.value,
                            "to": r.address,
                            "provider_id": r.provider_id,
                            "error": r.error,
                        }
                    ),
                    bill_id=r.job.bill.bill_id,
                )
                for r in results
                if r.outcome in (Outcome.SENT, Outcome.FAILED)
            ],
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


def _log(op: str, principal: str, unit_code: str, ref: str, content: object) -> LogEntry:
    return LogEntry(op, principal, unit_code, ref, datetime.now(UTC), content_digest(content))


async def resend_bill(
    pool: asyncpg.Pool, bill_id: int, channels: Sequence[Channel], principal: str
) -> int:
    """Send a bill again on ``channels`` (every channel it has when empty): a new
    round for jobs that exist, new jobs for channels it has gained (an account
    bound since). Returns how many jobs were queued."""
    wanted = [c.value for c in channels] or [c.value for c in Channel]
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "INSERT INTO delivery_jobs (bill_id, unit_code, place_code, channel)"
            " SELECT b.id, b.unit_code, b.place_code, c.channel FROM bills b"
            " CROSS JOIN LATERAL " + _CHANNELS_OF_BILL + " WHERE b.id = $1"
            " AND b.status IN ('issued', 'red_flushed') AND c.wanted"
            " AND c.channel = ANY($2::text[])"
            " ON CONFLICT (bill_id, channel) DO UPDATE SET status = 'pending', attempts = 0,"
            "  next_attempt_at = now(), last_error = ''"
            " RETURNING unit_code, channel, (SELECT bill_code || '/' || bill_no FROM bills"
            "  WHERE id = $1) AS ref",
            bill_id,
            wanted,
        )
        if rows:
            await append_entries(
                conn,
                [
                    _log("delivery.resend", principal, rows[0]["unit_code"], rows[0]["ref"],
                         {"channels": sorted(r["channel"] for r in rows)})
                ],
            )  # fmt: skip
    return len(rows)


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
                _log("delivery.resend", principal, unit_code, place_code or unit_code,
                     {"from": str(day_from or ""), "to": str(day_to or ""), "place": place_code,
                      "statuses": [s.value for s in statuses],
                      "channels": [c.value for c in channels], "count": int(count)})
            ],
        )  # fmt: skip
    return int(count)


async def opt_out(
    pool: asyncpg.Pool,
    unit_code: str,
    channel: Channel,
    address: str,
    principal: str,
    *,
    out: bool = True,
) -> bool:
    """Record (``out``) or withdraw a payer's opt-out; True when something changed."""
    async with pool.acquire() as conn, conn.transaction():
        if out:
            status = await conn.execute(
                "INSERT INTO delivery_optouts (unit_code, channel, address) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING",
                unit_code,
                channel.value,
                address,
            )
        else:
            status = await conn.execute(
                "DELETE FROM delivery_optouts WHERE unit_code = $1 AND channel = $2"
                " AND address = $3",
                unit_code,
                channel.value,
                address,
            )
        changed = not status.endswith(" 0")
        if changed:
            # The log names the channel, never the address itself.
            await append_entries(
                conn,
                [_log("delivery.opt_out" if out else "delivery.opt_in", principal, unit_code,
                      channel.value, {"channel": channel.value, "address": address})],
            )  # fmt: skip
    return changed


async def bind_account(
    pool: asyncpg.Pool, unit_code: str, card_no: str, channel: Channel, account: str
) -> None:
    """Bind a WeChat openid or Alipay user id to a visit card (from the unit's
    official account or mini program)."""
    await pool.execute(
        "INSERT INTO delivery_accounts (unit_code, card_no, channel, account)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (unit_code, card_no, channel)"
        " DO UPDATE SET account = $4, bound_at = now()",
        unit_code,
        card_no,
        channel.value,
        account,
    )


async def templates_of(
    pool: asyncpg.Pool, unit_code: str
) -> dict[tuple[Channel, MessageKind], Template]:
    """A unit's own templates (the defaults fill what is missing)."""
    rows = await pool.fetch("SELECT * FROM delivery_templates WHERE unit_code = $1", unit_code)
    return {
        (Channel(r["channel"]), MessageKind(r["kind"])): Template(
            channel=Channel(r["channel"]),
            kind=MessageKind(r["kind"]),
            provider_template=r["provider_template"],
            subject=r["subject"],
            body=r["body"],
            params=MappingProxyType(dict(r["params"])),
        )
        for r in rows
    }


async def set_template(
    pool: asyncpg.Pool, unit_code: str, template: Template | None,
    channel: Channel, kind: MessageKind, principal: str,
) -> None:  # fmt: skip
    """Store a unit's template (checked by the caller), or drop it (None: back to
    the default)."""
    async with pool.acquire() as conn, conn.transaction():
        if template is None:
            await conn.execute(
                "DELETE FROM delivery_templates WHERE unit_code = $1 AND channel = $2"
                " AND kind = $3",
                unit_code,
                channel.value,
                kind.value,
            )
            content: Mapping[str, object] = {"reset": True}
        else:
            await conn.execute(
                "INSERT INTO delivery_templates (unit_code, channel, kind, provider_template,"
                " subject, body, params, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (unit_code, channel, kind) DO UPDATE SET"
                " provider_template = $4, subject = $5, body = $6, params = $7,"
                " updated_by = $8, updated_at = now()",
                unit_code,
                channel.value,
                kind.value,
                template.provider_template,
                template.subject,
                template.body,
                dict(template.params),
                principal,
            )
            content = {
                "provider_template": template.provider_template,
                "subject": template.subject,
                "body": template.body,
                "params": json.loads(json.dumps(dict(template.params))),
            }
        await append_entries(
            conn,
            [_log("delivery.template", principal, unit_code, f"{channel.value}/{kind.value}",
                  content)],
        )  # fmt: skip
