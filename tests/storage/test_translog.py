"""The transparency log in PostgreSQL: issuance and events queue leaves in their
own transaction, the sequencer numbers them, proofs check out against a literal
RFC 6962 reference, and the verifier names a row edited in the database."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from engine.audit import LogVerifier
from engine.sm2 import SigningKey, sm3
from engine.translog import LogEntry, SignedHead, TreeHead
from storage import translog as store
from storage.bills import reserve
from storage.personal import open_canonical
from tests.factories import RING
from tests.merkle_reference import ref_mth, ref_path, ref_subproof
from tests.storage.test_reserve import prepared, setup
from usecases.translog import verify_database


async def _fresh(db: asyncpg.Pool) -> int:
    return await store.tree_size(db)


async def test_issuance_queues_one_leaf_per_bill_with_the_canonical_digest(
    db: asyncpg.Pool,
) -> None:
    await setup(db, numbers=10)
    out = await reserve(db, [(i, prepared(i + 1)) for i in range(3)], ring=RING)
    rows = await db.fetch(
        "SELECT e.op, e.ref, e.content_digest, b.id, b.canonical_sealed, b.bill_code, b.bill_no"
        " FROM log_entries e JOIN bills b ON b.id = e.bill_id"
        " WHERE e.bill_id = ANY($1::bigint[]) ORDER BY e.id",
        [w.bill_id for w in out.values()],  # type: ignore[union-attr]
    )
    assert len(rows) == 3
    for r in rows:
        assert r["op"] == "bill.issue"
        assert r["ref"] == f"{r['bill_code']}/{r['bill_no']}"
        assert bytes(r["content_digest"]) == sm3(open_canonical(RING, r))


async def test_sequencing_proofs_and_events(db: asyncpg.Pool) -> None:
    start = await _fresh(db)
    await setup(db, numbers=10)
    await reserve(db, [(i, prepared(i + 1)) for i in range(5)], ring=RING)
    # A stock movement written by any code path is logged by the trigger.
    await db.execute(
        "INSERT INTO stock_events (unit_code, bill_code, op, start_no, end_no, operator)"
        " VALUES ('T00000003', '01010101', 'distribute', 1, 9, '张三')"
    )
    done = await store.sequence(db)
    assert done is not None
    size, root = done
    assert size == start + 6
    assert await store.root_at(db, size) == root
    leaves = [await store.leaf_at(db, i) for i in range(size)]
    data = [lf.leaf.data() for lf in leaves if lf is not None]
    assert ref_mth(data) == root
    ev = leaves[-1]
    assert ev is not None and ev.leaf.op == "stock.distribute" and ev.leaf.principal == "张三"
    assert ev.leaf.ref == "stock:/01010101/1-9"
    for i in range(start, size):
        assert await store.inclusion_proof(db, i, size) == ref_path(i, data)
    for m in range(max(start, 1), size):
        assert await store.consistency_proof(db, m, size) == ref_subproof(m, data, True)
    # Nothing left to do: a second pass changes nothing.
    assert await store.sequence(db) == (size, root)


async def test_the_verifier_names_an_edited_row(db: asyncpg.Pool) -> None:
    start = await _fresh(db)
    now = datetime.now(UTC)
    async with db.acquire() as conn:
        entries = [
            LogEntry(f"user.op{i}", "admin", "U", f"r{i}", now, sm3(bytes([i]))) for i in range(8)
        ]
        await store.append_entries(conn, entries)
    done = await store.sequence(db)
    assert done is not None
    size, root = done
    key = SigningKey.generate()
    head = TreeHead(size, root, now)
    await store.store_head(db, SignedHead(head, key.sign(head.message()), "k", key.public.point))
    async with db.acquire() as conn:
        assert (await verify_database(conn, key.public)).ok
    target = start + 3
    await db.execute("UPDATE log_entries SET principal = 'mallory' WHERE leaf_index = $1", target)
    async with db.acquire() as conn:
        report = await verify_database(conn, key.public)
    assert report.first is not None
    assert (report.first.index, report.first.kind) == (target, "altered")
    # A head signed by another key is refused.
    other = SigningKey.generate()
    verifier = LogVerifier(await store.heads(db), other.public)
    assert any(f.kind == "signature" for f in verifier.finish().findings)


async def test_the_verifier_sees_a_bill_edited_after_issue(db: asyncpg.Pool) -> None:
    await setup(db, numbers=10)
    out = await reserve(db, [(i, prepared(i + 1)) for i in range(2)], ring=RING)
    assert await store.sequence(db) is not None
    async with db.acquire() as conn:
        assert (await verify_database(conn, None, RING)).ok
    bill_id = out[1].bill_id  # type: ignore[union-attr]
    index = await db.fetchval("SELECT leaf_index FROM log_entries WHERE bill_id = $1", bill_id)
    # The canonical bytes are sealed: one bit of the stored value flipped.
    await db.execute(
        "UPDATE bills SET canonical_sealed = set_byte(canonical_sealed, 40,"
        " get_byte(canonical_sealed, 40) # 1) WHERE id = $1",
        bill_id,
    )
    async with db.acquire() as conn:
        unchecked = await verify_database(conn, None)
        report = await verify_database(conn, None, RING)
    # Without the data key the bill's bytes cannot be checked, and the report says so.
    assert unchecked.ok and any("not checked" in n for n in unchecked.notes)
    assert report.first is not None
    assert (report.first.index, report.first.kind) == (index, "altered")
    assert "no longer has the content it was issued with" in report.first.message


async def test_requests_and_decisions_are_logged_with_who_decided(db: asyncpg.Pool) -> None:
    await setup(db, numbers=10)
    rid = await db.fetchval(
        "INSERT INTO requisitions (unit_code, place_code, bill_code, count, status, requested_by)"
        " VALUES ('T00000003', $1, $2, 5, 'pending', 'cashier A') RETURNING id",
        prepared(1).place_code,
        prepared(1).bill_code,
    )
    await db.execute(
        "UPDATE requisitions SET status = 'approved', decided_by = 'office B' WHERE id = $1", rid
    )
    rows = await db.fetch(
        "SELECT op, principal, ref, content FROM log_entries WHERE ref = $1 ORDER BY id",
        f"requisitions:{rid}",
    )
    assert [(r["op"], r["principal"]) for r in rows] == [
        ("stock.requisition.insert", "cashier A"),
        ("stock.requisition.update", "office B"),
    ]
    assert rows[1]["content"]["status"] == "approved"
