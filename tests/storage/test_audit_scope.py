"""AuditService reads the transparency log for the caller's own unit (issue 12):
with leaves of two units in one log, an auditor of one unit gets proofs of its
own leaves and bills and is refused the other unit's; heads and consistency
proofs (hashes of the whole log, no leaf) are the same for both."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from ebill.grpc.audit import AuditServicer
from ebill.grpc.auth import acting_as
from engine.errors import PermissionDenied
from engine.identity import Permission, Principal, Scope
from engine.sm2 import SigningKey, sm3
from engine.translog import LogEntry, SignedHead, TreeHead
from protos.ebill.v1 import audit_pb2
from storage import translog as store
from storage.bills import reserve
from tests.factories import RING
from tests.storage.test_reserve import UNIT, prepared, setup

OTHER = "U-OTHER-1"


def _auditor(unit: str) -> Principal:
    return Principal(
        kind="user",
        name=f"auditor-{unit}",
        unit_code=unit,
        scope=Scope(unit, office=True),
        permissions=frozenset({Permission.AUDIT_READ}),
    )


async def test_an_auditor_reads_only_its_own_units_leaves(db: asyncpg.Pool) -> None:
    await setup(db, numbers=10)
    out = await reserve(db, [(i, prepared(i + 1)) for i in range(2)], ring=RING)
    bill = next(iter(out.values()))
    now = datetime.now(UTC)
    key = SigningKey.generate()

    async def signed_head() -> int:
        done = await store.sequence(db)
        assert done is not None
        head = TreeHead(done[0], done[1], datetime.now(UTC))
        await store.store_head(
            db, SignedHead(head, key.sign(head.message()), "k", key.public.point)
        )
        return done[0]

    first = await signed_head()
    async with db.acquire() as conn:
        await store.append_entries(
            conn,
            [
                LogEntry("user.op", "admin-u", UNIT, "u:1", now, sm3(b"1")),
                LogEntry("user.op", "admin-o", OTHER, "o:1", now, sm3(b"2")),
            ],
        )
    size = await signed_head()
    own_leaf, other_leaf = size - 2, size - 1

    audit = AuditServicer(db)
    ctx: object = None

    def by_index(i: int) -> audit_pb2.GetInclusionProofRequest:
        return audit_pb2.GetInclusionProofRequest(leaf_index=i)

    by_bill = audit_pb2.GetInclusionProofRequest(
        bill=audit_pb2.LogBillRef(bill_code=bill.bill_code, bill_no=bill.bill_no)  # type: ignore[union-attr]
    )
    with acting_as(_auditor(UNIT)):
        got = await audit.GetInclusionProof(by_index(own_leaf), ctx)
        assert got.proofs[0].leaf.unit_code == UNIT
        got = await audit.GetInclusionProof(by_bill, ctx)
        assert got.proofs and all(p.leaf.unit_code == UNIT for p in got.proofs)
        with pytest.raises(PermissionDenied):
            await audit.GetInclusionProof(by_index(other_leaf), ctx)
    with acting_as(_auditor(OTHER)):
        got = await audit.GetInclusionProof(by_index(other_leaf), ctx)
        assert got.proofs[0].leaf.unit_code == OTHER and got.proofs[0].leaf.ref == "o:1"
        with pytest.raises(PermissionDenied):
            await audit.GetInclusionProof(by_index(own_leaf), ctx)
        with pytest.raises(PermissionDenied):  # the first unit's bill
            await audit.GetInclusionProof(by_bill, ctx)
    # Heads and consistency proofs carry no leaf: the same for either unit.
    request = audit_pb2.GetConsistencyProofRequest(first=first, second=size)
    seen = []
    for unit in (UNIT, OTHER):
        with acting_as(_auditor(unit)):
            seen.append(await audit.GetConsistencyProof(request, ctx))
    assert seen[0] == seen[1]
