"""Merkle tree hashing and proofs of RFC 9162 (Certificate Transparency v2), with SM3.

The tree of ``n`` leaves is the RFC's MTH: a leaf hashes as ``H(0x00 || data)``,
a node as ``H(0x01 || left || right)``, and a tree of ``n > 1`` leaves splits at
``k``, the largest power of two below ``n``. The hash is a parameter (SM3 by
default) so the RFC's SHA-256 test vectors check the same code.

Storage keeps only *perfect* subtrees: ``(level, index)`` names the subtree of
``2**level`` leaves starting at leaf ``index * 2**level``. Every hash a proof
needs is the MTH of a range ``[start, end)`` whose start is aligned to a power of
two at least its size, so it is a right fold of a few perfect subtrees
(:func:`perfect_pieces`). Proof generation is therefore split into a pure plan
(which ranges, which nodes) and a fold over the hashes the caller looked up, so
a proof costs O(log n) node reads, not a walk over the leaves.

:class:`CompactRange` is the right edge of the tree (one perfect subtree per set
bit of ``n``): appending a leaf is O(log n) and yields the perfect nodes it
completes, which is what the sequencer stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from engine.sm2 import sm3

__all__ = [
    "CompactRange",
    "HashFn",
    "Node",
    "consistency_ranges",
    "empty_root",
    "fold",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_pieces",
    "proof_from_nodes",
    "range_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HashFn = Callable[[bytes], bytes]
Node = tuple[int, int]  # (level, index): the perfect subtree of 2**level leaves


def leaf_hash(data: bytes, h: HashFn = sm3) -> bytes:
    return h(b"\x00" + data)


def node_hash(left: bytes, right: bytes, h: HashFn = sm3) -> bytes:
    return h(b"\x01" + left + right)


def empty_root(h: HashFn = sm3) -> bytes:
    """MTH({}) = HASH() (RFC 9162 section 2.1.1)."""
    return h(b"")


def _split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes], h: HashFn = sm3) -> bytes:
    """MTH of the leaves given by their hashes (O(n), for tests and the verifier)."""
    cr = CompactRange(h)
    for lh in leaf_hashes:
        cr.append(lh)
    return cr.root()


def perfect_pieces(start: int, end: int) -> list[Node]:
    """The perfect subtrees that make up ``[start, end)``, left to right, largest first.

    Valid for the ranges a proof uses (start aligned to a power of two at least
    the range's size); their MTH is :func:`fold` of the pieces' hashes.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    out: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1  # largest power of two that fits
        while start % (1 << level):
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def fold(hashes: Sequence[bytes], h: HashFn = sm3) -> bytes:
    """Right fold: the MTH of a range from its perfect pieces (largest first)."""
    acc = hashes[-1]
    for piece in reversed(hashes[:-1]):
        acc = node_hash(piece, acc, h)
    return acc


def range_hash(start: int, end: int, node: Callable[[Node], bytes], h: HashFn = sm3) -> bytes:
    return fold([node(p) for p in perfect_pieces(start, end)], h)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs are PATH(index, D[size]) (RFC 6962 section 2.1.1), in order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    out: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()  # PATH lists the sibling nearest the leaf first
    return out


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs are PROOF(first, D[second]) (RFC 6962 section 2.1.2)."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second} leaves")
    out: list[tuple[int, int]] = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        out.append((start, end))
    out.reverse()
    return out


def proof_from_nodes(
    ranges: Sequence[tuple[int, int]], nodes: Mapping[Node, bytes], h: HashFn = sm3
) -> list[bytes]:
    """The proof's hashes, given the perfect nodes the ranges are made of."""
    return [fold([nodes[p] for p in perfect_pieces(s, e)], h) for s, e in ranges]


def _lsb(x: int) -> int:
    return x & 1


def verify_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    h: HashFn = sm3,
) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` put leaf hash ``leaf`` at ``index``
    of the tree of ``size`` leaves with ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r, h)
            if not _lsb(fn):
                while not (_lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p, h)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
    h: HashFn = sm3,
) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree of ``second`` leaves an append-only
    extension of the tree of ``first`` leaves?"""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof  # every tree extends the empty tree
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while _lsb(fn):
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if _lsb(fn) or fn == sn:
            fr = node_hash(c, fr, h)
            sr = node_hash(c, sr, h)
            if not _lsb(fn):
                while not (_lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c, h)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class CompactRange:
    """The right edge of a tree: its perfect subtrees, left to right (largest first).

    Built from the stored nodes of ``perfect_pieces(0, size)`` (or empty), it
    takes leaf hashes one at a time and reports the perfect nodes each one
    completes, so the sequencer never rereads old leaves.
    """

    __slots__ = ("_h", "size", "stack")

    def __init__(self, h: HashFn = sm3, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if len(stack) != bin(size).count("1"):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} edge nodes")
        self._h = h
        self.size = size
        self.stack = list(stack)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add one leaf hash; returns every perfect node completed, the leaf first."""
        index = self.size
        made: list[tuple[Node, bytes]] = [((0, index), leaf)]
        acc, level = leaf, 0
        # Each trailing 1 bit of the old size is a subtree that the new leaf completes.
        while (index >> level) & 1:
            acc = node_hash(self.stack.pop(), acc, self._h)
            level += 1
            made.append(((level, index >> level), acc))
        self.stack.append(acc)
        self.size += 1
        return made

    def root(self) -> bytes:
        return fold(self.stack, self._h) if self.stack else empty_root(self._h)
