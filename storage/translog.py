"""The transparency log in PostgreSQL: queueing entries, sequencing, nodes, heads.

Operations call :func:`append_entries` inside their own transaction. The
sequencer (:func:`sequence`) runs under a transaction-level advisory lock, so
one engine at a time gives queued entries contiguous leaf indexes in queue
order and stores the perfect subtree nodes they complete; it reads only the
O(log n) edge nodes of the tree, never old leaves. Proofs read O(log n) nodes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence

import asyncpg

from config.settings import bench_no_translog
from engine.errors import DataLoss
from engine.merkle import (
    CompactRange,
    Node,
    consistency_ranges,
    empty_root,
    fold,
    inclusion_ranges,
    perfect_pieces,
    proof_from_nodes,
)
from engine.sealing import KeyRing
from engine.translog import Leaf, LogEntry, SignedHead, StoredLeaf, TreeHead, content_digest
from storage.personal import bill_aad

__all__ = [
    "LOG_LOCK_SQL",
    "append_entries",
    "consistency_proof",
    "heads",
    "inclusion_proof",
    "iter_leaves",
    "latest_head",
    "leaf_at",
    "leaves_of_bill",
    "root_at",
    "sequence",
    "store_head",
    "tree_size",
]

log = logging.getLogger(__name__)

# EBILL_BENCH_NO_TRANSLOG (benchmark stacks on loopback only): read once per
# process, since the engine's Ray workers write leaves too.
_skip: bool | None = None


def _skipped() -> bool:
    global _skip
    if _skip is None:
        _skip = bench_no_translog()
        if _skip:
            log.warning(
                "EBILL_BENCH_NO_TRANSLOG is set: transparency-log leaves are NOT written "
                "(benchmark stack on loopback only; never in service)"
            )
    return _skip


LOG_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(hashtextextended('ebill-translog', 0))"

_ENTRY_COLUMNS = (
    "op",
    "principal",
    "unit_code",
    "ref",
    "occurred_at",
    "content_digest",
    "bill_id",
)


async def append_entries(conn: asyncpg.Connection, entries: Sequence[LogEntry]) -> None:
    """Queue entries in the caller's transaction (one COPY)."""
    if not entries or _skipped():
        return
    await conn.copy_records_to_table(
        "log_entries",
        records=[
            (e.op, e.principal, e.unit_code, e.ref, e.occurred_at, e.content_digest, e.bill_id)
            for e in entries
        ],
        columns=_ENTRY_COLUMNS,
    )


async def tree_size(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    last = await conn.fetchval(
        "SELECT leaf_index FROM log_entries WHERE leaf_index IS NOT NULL"
        " ORDER BY leaf_index DESC LIMIT 1"
    )
    return 0 if last is None else int(last) + 1


async def _nodes(
    conn: asyncpg.Connection | asyncpg.Pool, wanted: Iterable[Node]
) -> dict[Node, bytes]:
    want = sorted(set(wanted))
    if not want:
        return {}
    rows = await conn.fetch(
        "SELECT n.level, n.idx, n.hash FROM log_nodes n"
        " JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx)"
        " ON n.level = w.level AND n.idx = w.idx",
        [lv for lv, _ in want],
        [ix for _, ix in want],
    )
    got = {(int(r["level"]), int(r["idx"])): bytes(r["hash"]) for r in rows}
    missing = [w for w in want if w not in got]
    if missing:
        raise LookupError(f"log nodes missing: {missing[:5]}")
    return got


async def root_at(conn: asyncpg.Connection | asyncpg.Pool, size: int) -> bytes:
    """The root of the first ``size`` leaves, from the stored edge nodes."""
    if size == 0:
        return empty_root()
    pieces = perfect_pieces(0, size)
    nodes = await _nodes(conn, pieces)
    return fold([nodes[p] for p in pieces])


async def sequence(pool: asyncpg.Pool, limit: int = 10_000) -> tuple[int, bytes] | None:
    """Give up to ``limit`` queued entries their leaves; (tree size, root) after,
    or None when another engine holds the sequencer lock."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(LOG_LOCK_SQL):
            return None
        size = await tree_size(conn)
        pieces = perfect_pieces(0, size) if size else []
        edge = await _nodes(conn, pieces)
        cr = CompactRange(size=size, stack=[edge[p] for p in pieces])
        rows = await conn.fetch(
            "SELECT id, op, principal, unit_code, ref, occurred_at, content_digest, content"
            " FROM log_entries WHERE leaf_index IS NULL ORDER BY id LIMIT $1",
            limit,
        )
        if not rows:
            return size, cr.root()
        updates: list[tuple[int, int, bytes, bytes]] = []
        nodes: list[tuple[int, int, bytes]] = []
        for r in rows:
            digest = r["content_digest"]
            if digest is None:
                digest = content_digest(r["content"])
            leaf = Leaf(
                index=cr.size,
                op=r["op"],
                principal=r["principal"],
                unit_code=r["unit_code"],
                ref=r["ref"],
                occurred_at=r["occurred_at"],
                content_digest=bytes(digest),
            )
            h = leaf.hash()
            updates.append((r["id"], leaf.index, h, bytes(digest)))
            nodes.extend((lv, ix, nh) for (lv, ix), nh in cr.append(h))
        await conn.execute(
            "UPDATE log_entries e SET leaf_index = u.ix, leaf_hash = u.h, content_digest = u.d"
            " FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS u(id, ix, h, d)"
            " WHERE e.id = u.id",
            [u[0] for u in updates],
            [u[1] for u in updates],
            [u[2] for u in updates],
            [u[3] for u in updates],
        )
        await conn.copy_records_to_table(
            "log_nodes", records=nodes, columns=("level", "idx", "hash")
        )
        return cr.size, cr.root()


async def store_head(pool: asyncpg.Pool | asyncpg.Connection, signed: SignedHead) -> None:
    await pool.execute(
        "INSERT INTO log_heads (tree_size, root, signed_at, signature, key_id, public_key)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tree_size) DO NOTHING",
        signed.head.size,
        signed.head.root,
        signed.head.timestamp,
        signed.signature,
        signed.key_id,
        signed.public_key,
    )


def _head(r: asyncpg.Record) -> SignedHead:
    return SignedHead(
        TreeHead(int(r["tree_size"]), bytes(r["root"]), r["signed_at"]),
        bytes(r["signature"]),
        r["key_id"],
        bytes(r["public_key"]),
    )


async def latest_head(pool: asyncpg.Pool | asyncpg.Connection) -> SignedHead | None:
    r = await pool.fetchrow("SELECT * FROM log_heads ORDER BY tree_size DESC LIMIT 1")
    return None if r is None else _head(r)


async def heads(
    pool: asyncpg.Pool | asyncpg.Connection, size: int | None = None
) -> list[SignedHead]:
    """Every signed head in order of size, or the one of ``size``."""
    if size is None:
        rows = await pool.fetch("SELECT * FROM log_heads ORDER BY tree_size")
    else:
        rows = await pool.fetch("SELECT * FROM log_heads WHERE tree_size = $1", size)
    return [_head(r) for r in rows]


def _canonical(r: asyncpg.Record, ring: KeyRing | None) -> bytes | None:
    """The bill's canonical bytes for the verifier: None when there are none or no
    ring to open them (then not checked); empty when they do not open (altered or
    moved: the verifier then finds the digest differs and names the leaf)."""
    if r["canonical_sealed"] is None or ring is None:
        return None
    try:
        return ring.open(bytes(r["canonical_sealed"]), bill_aad("canonical", r["bill_id"]))
    except DataLoss:
        return b""


def _stored(r: asyncpg.Record, ring: KeyRing | None = None) -> StoredLeaf:
    return StoredLeaf(
        Leaf(
            index=int(r["leaf_index"]),
            op=r["op"],
            principal=r["principal"],
            unit_code=r["unit_code"],
            ref=r["ref"],
            occurred_at=r["occurred_at"],
            content_digest=bytes(r["content_digest"]),
        ),
        bytes(r["leaf_hash"]),
        r["content"],
        r["bill_id"],
        _canonical(r, ring),
    )


# The bill's canonical bytes (sealed, storage.personal) ride along with its
# issuance leaf, so the verifier also sees a bill row edited after the fact.
_LEAF_SELECT = (
    "SELECT e.leaf_index, e.op, e.principal, e.unit_code, e.ref, e.occurred_at,"
    " e.content_digest, e.content, e.bill_id, e.leaf_hash, b.canonical_sealed"
    " FROM log_entries e"
    " LEFT JOIN bills b ON b.id = e.bill_id AND e.op = 'bill.issue'"
)


async def leaf_at(pool: asyncpg.Pool | asyncpg.Connection, index: int) -> StoredLeaf | None:
    r = await pool.fetchrow(_LEAF_SELECT + " WHERE e.leaf_index = $1", index)
    return None if r is None else _stored(r)


async def leaves_of_bill(
    pool: asyncpg.Pool | asyncpg.Connection, bill_code: str, bill_no: str
) -> list[StoredLeaf]:
    """The sequenced leaves that name a bill (its issuance, then its events)."""
    rows = await pool.fetch(
        _LEAF_SELECT + " WHERE e.bill_id = (SELECT id FROM bills WHERE bill_code = $1"
        " AND bill_no = $2) AND e.leaf_index IS NOT NULL ORDER BY e.leaf_index",
        bill_code,
        bill_no,
    )
    return [_stored(r) for r in rows]


async def iter_leaves(
    conn: asyncpg.Connection, chunk: int = 5000, ring: KeyRing | None = None
) -> AsyncIterator[StoredLeaf]:
    """Every sequenced row in leaf order (for the verifier and the export); with
    ``ring`` the issuance leaves carry their bill's canonical bytes.

    Keyset pages, so a log of millions streams in constant memory.
    """
    after = -1
    while True:
        rows = await conn.fetch(
            _LEAF_SELECT + " WHERE e.leaf_index > $1 ORDER BY e.leaf_index LIMIT $2", after, chunk
        )
        for r in rows:
            yield _stored(r, ring)
        if len(rows) < chunk:
            return
        after = int(rows[-1]["leaf_index"])


async def inclusion_proof(
    pool: asyncpg.Pool | asyncpg.Connection, index: int, size: int
) -> list[bytes]:
    ranges = inclusion_ranges(index, size)
    nodes = await _nodes(pool, (p for s, e in ranges for p in perfect_pieces(s, e)))
    return proof_from_nodes(ranges, nodes)


async def consistency_proof(
    pool: asyncpg.Pool | asyncpg.Connection, first: int, second: int
) -> list[bytes]:
    if first == 0 or first == second:
        return []
    ranges = consistency_ranges(first, second)
    nodes = await _nodes(pool, (p for s, e in ranges for p in perfect_pieces(s, e)))
    return proof_from_nodes(ranges, nodes)
