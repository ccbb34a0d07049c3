"""What the transparency log records: entries, the leaf bytes, signed tree heads.

An operation queues a :class:`LogEntry` in its own transaction (who, what, when,
on what, and the SM3 digest of its content). The sequencer gives it the next
leaf index; the leaf is then the canonical JSON of the entry *with its index*
(:func:`leaf_data`), so a row moved to another position no longer hashes to the
stored leaf and the verifier can name it. Tree heads are signed over
:meth:`TreeHead.message`. Both byte formats are documented in
docs/transparency-log.md so that an outside verifier can rebuild them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.merkle import leaf_hash
from engine.prepare import Prepared
from engine.sm2 import sm3

__all__ = [
    "LEAF_VERSION",
    "InclusionProof",
    "Leaf",
    "LogEntry",
    "SignedHead",
    "StoredLeaf",
    "TreeHead",
    "bill_entry",
    "canonical_json",
    "content_digest",
    "format_time",
]

LEAF_VERSION = 1
HEAD_PREFIX = "ebill.v1.tree_head"


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: one byte string per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_digest(obj: Any) -> bytes:
    """SM3 of the canonical JSON of a JSON value (the content of an event row)."""
    return sm3(canonical_json(obj))


def format_time(at: datetime) -> str:
    """UTC with microseconds, as PostgreSQL keeps it: ``2026-11-23T17:10:44.123456Z``."""
    if at.tzinfo is None:
        raise ValueError("log times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One state-changing operation, queued in the operation's own transaction.

    ``op`` is dotted (``bill.issue``, ``bill.red_flush``, ``stock.distribute``,
    ``user.create`` ...); ``principal`` the authenticated person or app;
    ``ref`` what it acted on (``<bill_code>/<bill_no>`` for a bill).
    """

    op: str
    principal: str
    unit_code: str
    ref: str
    occurred_at: datetime
    content_digest: bytes
    bill_id: int | None = None


@dataclass(frozen=True, slots=True)
class Leaf:
    """A sequenced entry: its fields as the leaf commits to them."""

    index: int
    op: str
    principal: str
    unit_code: str
    ref: str
    occurred_at: datetime
    content_digest: bytes

    def data(self) -> bytes:
        return canonical_json(
            {
                "v": LEAF_VERSION,
                "index": self.index,
                "op": self.op,
                "principal": self.principal,
                "unit": self.unit_code,
                "ref": self.ref,
                "time": format_time(self.occurred_at),
                "content": self.content_digest.hex(),
            }
        )

    def hash(self) -> bytes:
        return leaf_hash(self.data())


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The log's state at ``size`` leaves, as signed."""

    size: int
    root: bytes
    timestamp: datetime

    def message(self) -> bytes:
        """The bytes the signing server signs (SM2 over SM3(Z_A || message))."""
        return (
            f"{HEAD_PREFIX}\n{self.size}\n{self.root.hex()}\n{format_time(self.timestamp)}\n"
        ).encode()


def bill_entry(
    p: Prepared, bill_code: str, bill_no: str, canonical: bytes, at: datetime, bill_id: int
) -> LogEntry:
    """The entry of a bill written by the reserve transaction: its content is the
    canonical document the unit signature is made over; the principal is who
    issued it (the operator of a lifecycle bill, else the cashier)."""
    return LogEntry(
        op="bill.issue",
        principal=p.operator or p.cashier,
        unit_code=p.unit_code,
        ref=f"{bill_code}/{bill_no}",
        occurred_at=at,
        content_digest=sm3(canonical),
        bill_id=bill_id,
    )


@dataclass(frozen=True, slots=True)
class SignedHead:
    head: TreeHead
    signature: bytes
    key_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    """A sequenced row as stored: the leaf, the stored hash, the content if any."""

    leaf: Leaf
    leaf_hash: bytes
    content: Any = None
    bill_id: int | None = None
    # For a bill.issue leaf read from the database: the bill's canonical bytes now.
    bill_canonical: bytes | None = None


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """A stored leaf and its audit path to the tree of ``tree_size`` leaves."""

    leaf: StoredLeaf
    tree_size: int
    path: list[bytes]
