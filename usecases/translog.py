"""The transparency log's use cases: the sequencer loop, proofs, verify, export.

The sequencer runs in every engine; a transaction-level advisory lock lets one
at a time give queued entries their leaves. Every ``log_head_interval_s`` the
head (size, root, time) is signed by the signing server with the unit key and
stored; heads are only made when the tree grew, so their sizes strictly rise.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg

from clients.signer import SignerClient
from engine.audit import (
    LogVerifier,
    Report,
    head_from_json,
    head_to_json,
    leaf_from_json,
    leaf_to_json,
)
from engine.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from engine.sealing import KeyRing
from engine.sm2 import VerifyingKey
from engine.translog import InclusionProof, SignedHead, StoredLeaf, TreeHead
from storage import translog as store

__all__ = [
    "ALL_UNITS",
    "SEQUENCE_INTERVAL_S",
    "consistency",
    "export_log",
    "inclusion_by_bill",
    "inclusion_by_index",
    "sign_head",
    "translog_loop",
    "tree_head",
    "verify_database",
    "verify_lines",
]

log = logging.getLogger(__name__)

# How often queued entries are sequenced: a leaf is provable within about this.
SEQUENCE_INTERVAL_S = 0.5


async def sign_head(pool: asyncpg.Pool, signer: SignerClient) -> SignedHead | None:
    """Sequence what is queued and sign the head if the tree grew; the new head."""
    done = await store.sequence(pool)
    if done is None:
        return None  # another engine sequences
    size, root = done
    last = await store.latest_head(pool)
    if size == 0 or (last is not None and last.head.size >= size):
        return None
    head = TreeHead(size, root, datetime.now(UTC))
    [signature] = await signer.sign_batch([head.message()])
    key = await signer.public_key()
    signed = SignedHead(head, signature, signer.key_id, key.point)
    await store.store_head(pool, signed)
    return signed


async def translog_loop(pool: asyncpg.Pool, signer: SignerClient, head_interval_s: float) -> None:
    """Sequence every SEQUENCE_INTERVAL_S; sign a head every ``head_interval_s``."""
    loop = asyncio.get_running_loop()
    next_head = loop.time()
    while True:
        try:
            if loop.time() >= next_head:
                signed = await sign_head(pool, signer)
                if signed is not None:
                    log.info("signed tree head of %d leaves", signed.head.size)
                next_head = loop.time() + head_interval_s
            else:
                await store.sequence(pool)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("transparency log pass failed")
        await asyncio.sleep(SEQUENCE_INTERVAL_S)


async def tree_head(pool: asyncpg.Pool, tree_size: int = 0) -> SignedHead:
    """The signed head of ``tree_size`` leaves, or the latest (0)."""
    if tree_size:
        found = await store.heads(pool, tree_size)
        if not found:
            raise NotFound(f"tree_size: no signed head of {tree_size} leaves", field="tree_size")
        return found[0]
    head = await store.latest_head(pool)
    if head is None:
        raise FailedPrecondition("no signed tree head yet")
    return head


# Whose leaves a caller may read: a unit code, or ALL_UNITS (the engine itself,
# or a caller whose scope is every unit). A leaf holds its unit, principal and
# reference (a user name, a bill number): an auditor of one unit reads its own.
ALL_UNITS = "*"


def _readable(leaf: StoredLeaf, unit_code: str) -> bool:
    return unit_code == ALL_UNITS or leaf.leaf.unit_code == unit_code


async def inclusion_by_index(
    pool: asyncpg.Pool, index: int, tree_size: int = 0, *, unit_code: str = ALL_UNITS
) -> tuple[SignedHead, InclusionProof]:
    """The proof of leaf ``index`` in the signed head of ``tree_size`` (0: latest),
    for a caller of ``unit_code``: a leaf of another unit is refused."""
    head = await tree_head(pool, tree_size)
    if not 0 <= index < head.head.size:
        raise InvalidArgument(
            f"leaf_index: {index} is not in the signed tree of {head.head.size} leaves",
            field="leaf_index",
        )
    leaf = await store.leaf_at(pool, index)
    if leaf is None:
        raise NotFound(f"no leaf {index}")
    if not _readable(leaf, unit_code):
        raise PermissionDenied(f"leaf_index: leaf {index} is not of unit {unit_code}")
    path = await store.inclusion_proof(pool, index, head.head.size)
    return head, InclusionProof(leaf, head.head.size, path)


async def inclusion_by_bill(
    pool: asyncpg.Pool,
    bill_code: str,
    bill_no: str,
    tree_size: int = 0,
    *,
    unit_code: str = ALL_UNITS,
) -> tuple[SignedHead, list[InclusionProof]]:
    """Proofs of every leaf of a bill (its issuance, then its events) that the
    signed head covers, for a caller of ``unit_code`` (another unit's bill is refused)."""
    head = await tree_head(pool, tree_size)
    found = await store.leaves_of_bill(pool, bill_code, bill_no)
    leaves = [lf for lf in found if lf.leaf.index < head.head.size and _readable(lf, unit_code)]
    if not leaves and any(not _readable(lf, unit_code) for lf in found):
        raise PermissionDenied(f"bill: {bill_code}/{bill_no} is not of unit {unit_code}")
    if not leaves:
        raise NotFound(
            f"no leaf of bill {bill_code}/{bill_no} in the signed tree of {head.head.size} leaves"
            " (a new bill is covered by the next head)"
        )
    proofs = [
        InclusionProof(
            lf, head.head.size, await store.inclusion_proof(pool, lf.leaf.index, head.head.size)
        )
        for lf in leaves
    ]
    return head, proofs


async def consistency(
    pool: asyncpg.Pool, first: int, second: int
) -> tuple[SignedHead, SignedHead, list[bytes]]:
    """The proof that the signed head of ``second`` leaves extends that of ``first``."""
    if not 0 < first <= second:
        raise InvalidArgument(
            f"first: need 0 < first <= second, got {first} and {second}", field="first"
        )
    a, b = await tree_head(pool, first), await tree_head(pool, second)
    return a, b, await store.consistency_proof(pool, first, second)


async def verify_database(
    conn: asyncpg.Connection, key: VerifyingKey | None, ring: KeyRing | None = None
) -> Report:
    """Check every stored leaf and signed head (see engine.audit); with the data
    key ``ring`` also each bill's canonical bytes against its issuance leaf."""
    verifier = LogVerifier(await store.heads(conn), key)
    async for row in store.iter_leaves(conn, ring=ring):
        verifier.add(row)
    report = verifier.finish()
    if ring is None:
        report.notes.append(
            "bills' canonical bytes not checked: they are sealed and no data key ring was given"
        )
    queued = await conn.fetchval("SELECT count(*) FROM log_entries WHERE leaf_index IS NULL")
    if queued:
        report.notes.append(f"{queued} entries queued, not yet in the tree")
    return report


def verify_lines(lines: Iterable[str], key: VerifyingKey | None) -> Report:
    """Check an exported log (JSON lines, heads and leaves in any order)."""
    heads: list[SignedHead] = []
    leaves: list[StoredLeaf] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        obj = json.loads(line)
        if "head" in obj:
            heads.append(head_from_json(obj))
        elif "leaf" in obj:
            leaves.append(leaf_from_json(obj))
        else:
            raise ValueError(f"line {n}: neither a leaf nor a head")
    # Sort by the stored index: a reordered export is then seen as reordered leaves.
    leaves.sort(key=lambda r: r.leaf.index)
    verifier = LogVerifier(heads, key)
    for row in leaves:
        verifier.add(row)
    return verifier.finish()


async def export_log(conn: asyncpg.Connection) -> list[str]:
    """The log as JSON lines: the signed heads, then every leaf in order."""
    out = [head_to_json(h) for h in await store.heads(conn)]
    out.extend([leaf_to_json(row) async for row in store.iter_leaves(conn)])
    return out
