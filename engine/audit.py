"""The offline verifier of the transparency log, and its export format.

:class:`LogVerifier` takes the stored rows in leaf order and the signed heads,
and for each row recomputes the leaf from its fields (and the content digest
from the content, where the row keeps it), rebuilds the tree, and checks every
signed head's root and SM2 signature. It names the first leaf that was removed
(a gap in the indexes, or leaves a signed head covers that are gone), altered
(the row no longer hashes to its stored leaf) or reordered (the row hashes to
its stored leaf at another index). A forger who also rewrote the stored hashes
is caught by the first signed head whose root no longer matches; the verifier
then names the range of leaves between that head and the last good one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.merkle import CompactRange
from engine.sm2 import VerifyingKey, sm3
from engine.translog import Leaf, SignedHead, StoredLeaf, TreeHead, content_digest, format_time

__all__ = [
    "Finding",
    "LogVerifier",
    "Report",
    "head_from_json",
    "head_to_json",
    "leaf_from_json",
    "leaf_to_json",
]


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    index: int  # the first leaf concerned
    kind: str  # removed | altered | reordered | head | signature
    message: str


@dataclass(slots=True)
class Report:
    leaves: int = 0
    heads_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        """The first leaf named: a row-level finding when there is one (a head that
        no longer matches only says which range to look in)."""
        rows = [f for f in self.findings if f.kind in ("removed", "altered", "reordered")]
        pool = rows or self.findings
        return min(pool) if pool else None


class LogVerifier:
    """Feed :meth:`add` every stored row in leaf order, then :meth:`finish`."""

    def __init__(self, heads: Sequence[SignedHead], key: VerifyingKey | None) -> None:
        self._heads = sorted(heads, key=lambda h: h.head.size)
        self._key = key
        self._next_head = 0
        self._last_good = 0
        self._cr = CompactRange()
        self._expected = 0
        self._bad: dict[int, StoredLeaf] = {}  # position -> row that does not hash right
        self._gaps: list[tuple[int, int]] = []
        self.report = Report()

    def add(self, row: StoredLeaf) -> None:
        i = row.leaf.index
        if i < self._expected:
            self._finding(i, "altered", f"leaf {i} appears twice (altered)")
            return
        if i > self._expected:
            self._gaps.append((self._expected, i))
        self._expected = i + 1
        self.report.leaves += 1
        if row.content is not None and content_digest(row.content) != row.leaf.content_digest:
            self._finding(i, "altered", f"leaf {i}: its content does not match its digest")
        if row.bill_canonical is not None and sm3(row.bill_canonical) != row.leaf.content_digest:
            self._finding(
                i,
                "altered",
                f"leaf {i}: bill {row.leaf.ref} no longer has the content it was issued with",
            )
        recomputed = row.leaf.hash()
        if recomputed != row.leaf_hash:
            self._bad[i] = row
        self._cr.append(recomputed)
        self._check_heads()

    def _check_heads(self) -> None:
        while self._next_head < len(self._heads):
            sh = self._heads[self._next_head]
            if sh.head.size != self._cr.size:
                if sh.head.size < self._cr.size:  # a head no tree size met (leaves removed)
                    self._head_mismatch(sh)
                    self._next_head += 1
                    continue
                return
            if self._cr.root() == sh.head.root:
                self._last_good = sh.head.size
            else:
                self._head_mismatch(sh)
            self._next_head += 1

    def _head_mismatch(self, sh: SignedHead) -> None:
        self._finding(
            self._last_good,
            "head",
            f"the signed head of {sh.head.size} leaves ({format_time(sh.head.timestamp)}) does"
            f" not match the stored leaves: a leaf in [{self._last_good}, {sh.head.size})"
            " was removed, altered or reordered",
        )

    def _finding(self, index: int, kind: str, message: str) -> None:
        self.report.findings.append(Finding(index, kind, message))

    def finish(self) -> Report:
        rep = self.report
        for start, end in self._gaps:
            rep.findings.append(
                Finding(start, "removed", f"leaves {start} to {end - 1} are missing (removed)")
                if end - start > 1
                else Finding(start, "removed", f"leaf {start} is missing (removed)")
            )
        # A row whose stored hash is its own leaf at another position was moved.
        candidates = sorted(set(self._bad) | {i for s, e in self._gaps for i in range(s, e)})
        for i, row in sorted(self._bad.items()):
            moved = next(
                (j for j in candidates if j != i and _at(row.leaf, j).hash() == row.leaf_hash),
                None,
            )
            if moved is not None:
                msg = f"leaf {i} holds the entry recorded as leaf {moved} (reordered)"
                rep.findings.append(Finding(i, "reordered", msg))
            else:
                msg = f"leaf {i} ({row.leaf.op} {row.leaf.ref}) does not hash to its stored leaf"
                rep.findings.append(Finding(i, "altered", msg + " (altered)"))
        for sh in self._heads[self._next_head :]:
            # Heads beyond the stored tree: their last leaves are gone.
            rep.findings.append(
                Finding(
                    self._cr.size,
                    "removed",
                    f"the signed head of {sh.head.size} leaves covers leaves"
                    f" {self._cr.size} to {sh.head.size - 1}, which are missing (removed)",
                )
            )
        for sh in self._heads:
            key = self._key
            if key is None:
                key = VerifyingKey(sh.public_key)
            if not key.verify(sh.head.message(), sh.signature):
                rep.findings.append(
                    Finding(
                        sh.head.size,
                        "signature",
                        f"the signature of the head of {sh.head.size} leaves does not verify",
                    )
                )
            rep.heads_checked += 1
        if self._key is None and self._heads:
            rep.notes.append(
                "signatures checked with the public key stored beside each head; give the"
                " signing server's key to check them against a key you trust"
            )
        if not self._heads:
            rep.notes.append("no signed tree head yet: only the rows' own hashes were checked")
        rep.findings.sort()
        return rep


def _at(leaf: Leaf, index: int) -> Leaf:
    return Leaf(
        index, leaf.op, leaf.principal, leaf.unit_code, leaf.ref, leaf.occurred_at,
        leaf.content_digest,
    )  # fmt: skip


# --- Export: one JSON object per line. ---


def leaf_to_json(row: StoredLeaf) -> str:
    lf = row.leaf
    return json.dumps(
        {
            "leaf": {
                "index": lf.index,
                "op": lf.op,
                "principal": lf.principal,
                "unit": lf.unit_code,
                "ref": lf.ref,
                "time": format_time(lf.occurred_at),
                "content_digest": lf.content_digest.hex(),
                "leaf_hash": row.leaf_hash.hex(),
                "content": row.content,
            }
        },
        ensure_ascii=False,
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def leaf_from_json(obj: dict[str, Any]) -> StoredLeaf:
    d = obj["leaf"]
    return StoredLeaf(
        Leaf(
            index=int(d["index"]),
            op=d["op"],
            principal=d["principal"],
            unit_code=d["unit"],
            ref=d["ref"],
            occurred_at=_time(d["time"]),
            content_digest=bytes.fromhex(d["content_digest"]),
        ),
        bytes.fromhex(d["leaf_hash"]),
        d.get("content"),
    )


def head_to_json(sh: SignedHead) -> str:
    return json.dumps(
        {
            "head": {
                "size": sh.head.size,
                "root": sh.head.root.hex(),
                "time": format_time(sh.head.timestamp),
                "signature": sh.signature.hex(),
                "key_id": sh.key_id,
                "public_key": sh.public_key.hex(),
            }
        }
    )


def head_from_json(obj: dict[str, Any]) -> SignedHead:
    d = obj["head"]
    return SignedHead(
        TreeHead(int(d["size"]), bytes.fromhex(d["root"]), _time(d["time"])),
        bytes.fromhex(d["signature"]),
        d["key_id"],
        bytes.fromhex(d["public_key"]),
    )
