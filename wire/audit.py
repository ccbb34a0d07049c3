"""The transparency log's records as protobuf (AuditService)."""

from __future__ import annotations

from engine.translog import InclusionProof, SignedHead, format_time
from protos.ebill.v1 import audit_pb2

__all__ = ["head_to_pb", "proof_to_pb"]


def head_to_pb(sh: SignedHead) -> audit_pb2.SignedTreeHead:
    return audit_pb2.SignedTreeHead(
        tree_size=sh.head.size,
        root_hash=sh.head.root,
        timestamp=format_time(sh.head.timestamp),
        signature=sh.signature,
        key_id=sh.key_id,
        public_key=sh.public_key,
        message=sh.head.message(),
    )


def proof_to_pb(p: InclusionProof) -> audit_pb2.InclusionProof:
    lf = p.leaf.leaf
    return audit_pb2.InclusionProof(
        leaf=audit_pb2.LogLeaf(
            leaf_index=lf.index,
            op=lf.op,
            principal=lf.principal,
            unit_code=lf.unit_code,
            ref=lf.ref,
            occurred_at=format_time(lf.occurred_at),
            content_digest=lf.content_digest,
            leaf_data=lf.data(),
        ),
        audit_path=p.path,
    )
