"""An independent Merkle tree reference for the tests: RFC 6962 section 2.1
written out literally (recursive MTH, PATH, SUBPROOF) with gmssl's SM3, and
recursive checkers of inclusion and consistency proofs built on the same
definitions. Nothing here imports engine.merkle."""

from __future__ import annotations

from gmssl import func, sm3

__all__ = [
    "ref_k",
    "ref_leaf",
    "ref_mth",
    "ref_node",
    "ref_path",
    "ref_sm3",
    "ref_subproof",
    "root_from_path",
    "roots_from_consistency",
]


def ref_sm3(data: bytes) -> bytes:
    return bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(data)))


def ref_leaf(data: bytes) -> bytes:
    return ref_sm3(b"\x00" + data)


def ref_node(left: bytes, right: bytes) -> bytes:
    return ref_sm3(b"\x01" + left + right)


def ref_k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return ref_sm3(b"")
    if len(d) == 1:
        return ref_leaf(d[0])
    k = ref_k(len(d))
    return ref_node(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = ref_k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def root_from_path(leaf_hash: bytes, m: int, n: int, path: list[bytes]) -> bytes:
    """The root PATH(m, D[n]) leads to from leaf m (the last element is the top sibling)."""
    if n == 1:
        assert not path, "path too long"
        return leaf_hash
    assert path, "path too short"
    k = ref_k(n)
    *rest, sibling = path
    if m < k:
        return ref_node(root_from_path(leaf_hash, m, k, rest), sibling)
    return ref_node(sibling, root_from_path(leaf_hash, m - k, n - k, rest))


def roots_from_consistency(
    m: int, n: int, proof: list[bytes], first_root: bytes, b: bool = True
) -> tuple[bytes, bytes]:
    """(old root, new root) that SUBPROOF(m, D[n], b) = ``proof`` implies."""
    if m == n:
        if b:
            assert not proof, "proof too long"
            return first_root, first_root
        assert len(proof) == 1, "proof has the wrong length"
        return proof[0], proof[0]
    assert proof, "proof too short"
    k = ref_k(n)
    *rest, sibling = proof
    if m <= k:
        old, new = roots_from_consistency(m, k, rest, first_root, b)
        return old, ref_node(new, sibling)
    old, new = roots_from_consistency(m - k, n - k, rest, first_root, False)
    return ref_node(sibling, old), ref_node(sibling, new)
