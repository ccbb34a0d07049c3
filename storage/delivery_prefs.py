"""Delivery preferences in PostgreSQL (migration 0011): the per-unit switch,
payers' opt-outs and bound accounts (keyed digests only), and units' templates.
Each change writes its transparency-log leaf in its own transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType

import asyncpg

from engine.delivery import Channel, MessageKind, Template
from engine.sealing import KeyRing
from engine.translog import LogEntry, content_digest
from storage.personal import CARD
from storage.translog import append_entries

__all__ = [
    "address_hash",
    "bind_account",
    "log_entry",
    "opt_out",
    "opted_out",
    "set_template",
    "set_unit_enabled",
    "templates_of",
]


def log_entry(op: str, principal: str, unit_code: str, ref: str, content: object) -> LogEntry:
    return LogEntry(op, principal, unit_code, ref, datetime.now(UTC), content_digest(content))


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
            conn,
            [log_entry("delivery.unit", principal, unit_code, unit_code, {"enabled": enabled})],
        )


def address_hash(ring: KeyRing, channel: Channel, address: str) -> bytes:
    """The keyed digest an opt-out is kept under (the address normalised)."""
    digest = ring.index(address, f"delivery.{channel.value}")
    assert digest is not None, "an empty address has no opt-out"
    return digest


async def opted_out(
    pool: asyncpg.Pool, ring: KeyRing, wanted: Iterable[tuple[str, Channel, str]]
) -> set[tuple[str, Channel, str]]:
    """Which of (unit_code, channel, normalised address) opted out."""
    keys = {(u, c, address_hash(ring, c, a)): (u, c, a) for u, c, a in set(wanted)}
    if not keys:
        return set()
    rows = await pool.fetch(
        "SELECT o.unit_code, o.channel, o.address_hash FROM delivery_optouts o"
        " JOIN unnest($1::text[], $2::text[], $3::bytea[]) AS k(u, c, a)"
        " ON o.unit_code = k.u AND o.channel = k.c AND o.address_hash = k.a",
        [k[0] for k in keys],
        [k[1].value for k in keys],
        [k[2] for k in keys],
    )
    return {keys[(r["unit_code"], Channel(r["channel"]), bytes(r["address_hash"]))] for r in rows}


async def opt_out(
    pool: asyncpg.Pool,
    ring: KeyRing,
    unit_code: str,
    channel: Channel,
    address: str,
    principal: str,
    *,
    out: bool = True,
) -> bool:
    """Record (``out``) or withdraw a payer's opt-out; True when something changed.
    Only the address's keyed digest is stored, and the log names only that."""
    digest = address_hash(ring, channel, address)
    async with pool.acquire() as conn, conn.transaction():
        if out:
            status = await conn.execute(
                "INSERT INTO delivery_optouts (unit_code, channel, address_hash)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                unit_code,
                channel.value,
                digest,
            )
        else:
            status = await conn.execute(
                "DELETE FROM delivery_optouts WHERE unit_code = $1 AND channel = $2"
                " AND address_hash = $3",
                unit_code,
                channel.value,
                digest,
            )
        changed = not status.endswith(" 0")
        if changed:
            await append_entries(
                conn,
                [log_entry("delivery.opt_out" if out else "delivery.opt_in", principal, unit_code,
                      channel.value, {"channel": channel.value, "address": digest.hex()})],
            )  # fmt: skip
    return changed


async def bind_account(
    pool: asyncpg.Pool, ring: KeyRing, unit_code: str, card_no: str, channel: Channel,
    account: str,
) -> None:  # fmt: skip
    """Bind a WeChat openid or Alipay user id to a visit card (from the unit's
    official account or mini program); the card is kept as its keyed digest."""
    card = ring.index(card_no, CARD)
    assert card is not None, "a card number is required"
    await pool.execute(
        "INSERT INTO delivery_accounts (unit_code, card_hash, channel, account)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (unit_code, card_hash, channel)"
        " DO UPDATE SET account = $4, bound_at = now()",
        unit_code,
        card,
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
            [log_entry("delivery.template", principal, unit_code, f"{channel.value}/{kind.value}",
                  content)],
        )  # fmt: skip
