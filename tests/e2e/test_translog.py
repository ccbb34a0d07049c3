"""The transparency log end to end: bills issued over gRPC become leaves, heads
are signed by the signing server, and the inclusion and consistency proofs the
AuditService returns are checked here by an independent implementation
(tests/merkle_reference.py: RFC 6962 written out with gmssl's SM3; gmssl SM2 for
the head signatures). Then rows of the log are edited, deleted and swapped in
PostgreSQL directly, and `ebill audit verify` names the leaf each time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio

from engine.sm2 import SigningKey
from ops.stack import Stack
from protos.ebill.v1 import audit_pb2, audit_pb2_grpc, bill_pb2, issuance_pb2, issuance_pb2_grpc
from tests.gm_reference import gm_verify
from tests.merkle_reference import ref_leaf, ref_sm3, root_from_path, roots_from_consistency
from tests.resilience import public_keys
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module")
async def audit(stack: Stack) -> AsyncIterator[audit_pb2_grpc.AuditServiceStub]:
    async with stack.channel() as ch:
        yield audit_pb2_grpc.AuditServiceStub(ch)


async def issue(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, prefix: str, n: int
) -> list[bill_pb2.IssuedBill]:
    bills = [input_to_pb(demo.demo_bill(i, prefix=prefix)) for i in range(n)]
    resp = await issuance.IssueBatch(issuance_pb2.IssueBatchRequest(bills=bills))
    assert all(r.HasField("bill") for r in resp.results), resp
    return [r.bill for r in resp.results]


async def proofs_of(
    audit: audit_pb2_grpc.AuditServiceStub, bill: bill_pb2.IssuedBill
) -> audit_pb2.InclusionProofResponse:
    """Wait until a signed head covers the bill (heads come every second here)."""
    req = audit_pb2.GetInclusionProofRequest(
        bill=audit_pb2.LogBillRef(bill_code=bill.bill_code, bill_no=bill.bill_no)
    )
    for _ in range(100):
        try:
            resp: audit_pb2.InclusionProofResponse = await audit.GetInclusionProof(req)
            return resp
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no signed head covers {bill.bill_code}/{bill.bill_no}")


def check_head(head: audit_pb2.SignedTreeHead, unit_key: bytes) -> None:
    """The head message rebuilt from its documented format, signed by the unit key."""
    message = (
        f"ebill.v1.tree_head\n{head.tree_size}\n{head.root_hash.hex()}\n{head.timestamp}\n"
    ).encode()
    assert head.message == message
    assert head.public_key == unit_key
    assert gm_verify(unit_key, message, head.signature)


def check_inclusion(
    proof: audit_pb2.InclusionProof, head: audit_pb2.SignedTreeHead, bill: bill_pb2.IssuedBill
) -> None:
    leaf = proof.leaf
    fields = json.loads(leaf.leaf_data)
    assert fields == {
        "v": 1,
        "index": leaf.leaf_index,
        "op": leaf.op,
        "principal": leaf.principal,
        "unit": leaf.unit_code,
        "ref": leaf.ref,
        "time": leaf.occurred_at,
        "content": leaf.content_digest.hex(),
    }
    assert (leaf.op, leaf.ref) == ("bill.issue", f"{bill.bill_code}/{bill.bill_no}")
    # The leaf commits to the very bytes the unit signature is over.
    assert leaf.content_digest == ref_sm3(bill.canonical)
    root = root_from_path(
        ref_leaf(leaf.leaf_data), leaf.leaf_index, head.tree_size, list(proof.audit_path)
    )
    assert root == head.root_hash


async def test_proofs_check_out_independently(
    stack: Stack,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    audit: audit_pb2_grpc.AuditServiceStub,
) -> None:
    unit_key, _ = await public_keys(stack)
    first_bills = await issue(issuance, "TLOG1X", 5)
    got = await proofs_of(audit, first_bills[-1])
    first = got.head
    check_head(first, unit_key)
    for b in first_bills:
        got = await audit.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(
                bill=audit_pb2.LogBillRef(bill_code=b.bill_code, bill_no=b.bill_no),
                tree_size=first.tree_size,
            )
        )
        [proof] = got.proofs
        check_inclusion(proof, first, b)
        by_index = await audit.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(
                leaf_index=proof.leaf.leaf_index, tree_size=first.tree_size
            )
        )
        assert by_index.proofs[0] == proof

    later_bills = await issue(issuance, "TLOG2X", 7)
    got = await proofs_of(audit, later_bills[-1])
    second = got.head
    check_head(second, unit_key)
    assert second.tree_size > first.tree_size
    check_inclusion(got.proofs[0], second, later_bills[-1])
    latest = await audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
    assert latest.tree_size >= second.tree_size

    cons = await audit.GetConsistencyProof(
        audit_pb2.GetConsistencyProofRequest(first=first.tree_size, second=second.tree_size)
    )
    assert (cons.first, cons.second) == (first, second)
    old, new = roots_from_consistency(
        first.tree_size, second.tree_size, list(cons.proof), first.root_hash
    )
    assert (old, new) == (first.root_hash, second.root_hash)
    # A proof with one hash changed proves nothing.
    bad = [*cons.proof[:-1], ref_sm3(cons.proof[-1])]
    assert roots_from_consistency(first.tree_size, second.tree_size, bad, first.root_hash)[1] != (
        second.root_hash
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await audit.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(first=second.tree_size, second=first.tree_size)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def verify(stack: Stack, unit_key: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "ebill.cli", "audit", "verify",
            "--public-key", unit_key.hex(), *extra,
        ],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


async def swap(pool: asyncpg.Pool, a: int, b: int) -> None:
    """Exchange the places of two leaves (through -1: the index is unique)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE log_entries SET leaf_index = -1 WHERE leaf_index = $1", a)
        await conn.execute("UPDATE log_entries SET leaf_index = $1 WHERE leaf_index = $2", a, b)
        await conn.execute("UPDATE log_entries SET leaf_index = $1 WHERE leaf_index = -1", b)


async def signed_size(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(tree_size), 0) FROM log_heads"))


async def test_the_verifier_names_an_edited_a_deleted_and_a_swapped_row(
    stack: Stack,
    pool: asyncpg.Pool,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    audit: audit_pb2_grpc.AuditServiceStub,
    tmp_path: Path,
) -> None:
    unit_key, _ = await public_keys(stack)
    bills = await issue(issuance, "TLOG3X", 4)
    got = await proofs_of(audit, bills[-1])
    target = got.proofs[0].leaf.leaf_index - 2  # a leaf a signed head covers
    ok = verify(stack, unit_key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK:" in ok.stdout

    row: dict[str, Any] = dict(
        await pool.fetchrow("SELECT * FROM log_entries WHERE leaf_index = $1", target)
    )
    try:
        # One row edited in PostgreSQL: who did it.
        await pool.execute(
            "UPDATE log_entries SET principal = 'mallory' WHERE leaf_index = $1", target
        )
        out = verify(stack, unit_key)
        assert out.returncode == 1, out.stdout
        assert f"first bad leaf {target}:" in out.stdout and "(altered)" in out.stdout
        await pool.execute(
            "UPDATE log_entries SET principal = $2 WHERE leaf_index = $1", target, row["principal"]
        )

        # One row deleted.
        await pool.execute("DELETE FROM log_entries WHERE leaf_index = $1", target)
        out = verify(stack, unit_key)
        assert out.returncode == 1, out.stdout
        assert f"first bad leaf {target}:" in out.stdout and "removed" in out.stdout
        cols = list(row)
        await pool.execute(
            f"INSERT INTO log_entries ({', '.join(cols)}) VALUES"
            f" ({', '.join(f'${i + 1}' for i in range(len(cols)))})",
            *row.values(),
        )

        # Two rows swapped.
        await swap(pool, target, target + 1)
        out = verify(stack, unit_key)
        assert out.returncode == 1, out.stdout
        assert f"first bad leaf {target}:" in out.stdout
        assert f"holds the entry recorded as leaf {target + 1} (reordered)" in out.stdout
        await swap(pool, target, target + 1)
    finally:
        await pool.execute(
            "UPDATE log_entries SET principal = $2 WHERE leaf_index = $1", target, row["principal"]
        )

    # Restored: the log verifies again, from the database and from an export.
    assert verify(stack, unit_key).returncode == 0
    exported = tmp_path / "log.jsonl"
    subprocess.run(
        [sys.executable, "-m", "ebill.cli", "audit", "export", "-o", str(exported)],
        env=stack.env(),
        check=True,
        timeout=120,
    )
    ok = verify(stack, unit_key, "--file", str(exported))
    assert ok.returncode == 0, ok.stdout
    # An export edited offline: the content digest of one leaf changed.
    lines = exported.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj.get("leaf", {}).get("index") == target:
            obj["leaf"]["content_digest"] = "00" * 32
            lines[i] = json.dumps(obj)
    exported.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = verify(stack, unit_key, "--file", str(exported))
    assert out.returncode == 1 and f"first bad leaf {target}:" in out.stdout
    # Heads signed by another key are refused.
    other = verify(stack, SigningKey.generate().public.point)
    assert other.returncode == 1 and "[signature]" in other.stdout
    assert await signed_size(pool) > target
