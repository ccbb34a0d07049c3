"""AuditService over gRPC: tree heads and proofs of the transparency log.

Reads the request, calls usecases.translog, maps the records to protobuf.
Errors are engine errors; the interceptors turn them into status codes.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
import grpc

from ebill.grpc.auth import principal
from engine.errors import InvalidArgument
from protos.ebill.v1 import audit_pb2, audit_pb2_grpc
from usecases import translog
from wire.audit import head_to_pb, proof_to_pb

__all__ = ["AuditServicer"]

Ctx: TypeAlias = grpc.aio.ServicerContext


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def GetTreeHead(
        self, request: audit_pb2.GetTreeHeadRequest, context: Ctx
    ) -> audit_pb2.SignedTreeHead:
        return head_to_pb(await translog.tree_head(self._pool, request.tree_size))

    async def GetInclusionProof(
        self, request: audit_pb2.GetInclusionProofRequest, context: Ctx
    ) -> audit_pb2.InclusionProofResponse:
        target = request.WhichOneof("target")
        # Leaves name their unit, principal and reference: the caller's own unit's
        # only ("*": the engine, or a caller over every unit).
        unit = principal().unit_code
        if target == "leaf_index":
            head, proof = await translog.inclusion_by_index(
                self._pool, request.leaf_index, request.tree_size, unit_code=unit
            )
            proofs = [proof]
        elif target == "bill":
            if not request.bill.bill_code or not request.bill.bill_no:
                raise InvalidArgument("bill: bill_code and bill_no are both required", field="bill")
            head, proofs = await translog.inclusion_by_bill(
                self._pool,
                request.bill.bill_code,
                request.bill.bill_no,
                request.tree_size,
                unit_code=unit,
            )
        else:
            raise InvalidArgument("target: give leaf_index or bill", field="target")
        return audit_pb2.InclusionProofResponse(
            head=head_to_pb(head), proofs=[proof_to_pb(p) for p in proofs]
        )

    async def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: Ctx
    ) -> audit_pb2.ConsistencyProofResponse:
        # Not scoped by unit: heads and consistency proofs are hashes of the one
        # log of every unit, no leaf; each unit's auditor needs the same ones to
        # see that the log it is shown is not forked (docs/transparency-log.md).
        first, second, proof = await translog.consistency(self._pool, request.first, request.second)
        return audit_pb2.ConsistencyProofResponse(
            first=head_to_pb(first), second=head_to_pb(second), proof=proof
        )
