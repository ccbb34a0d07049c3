"""engine.merkle against the Certificate Transparency test vectors (SHA-256, the
transparency-dev/merkle reference vectors) and, with SM3, against a plain
recursive MTH/PATH/PROOF written here from RFC 6962 section 2.1 with gmssl's SM3."""

from __future__ import annotations

import hashlib

import pytest

from engine import merkle
from engine.sm2 import sm3 as merkle_sm3
from tests.merkle_reference import (
    ref_mth,
    ref_path,
    ref_subproof,
    root_from_path,
    roots_from_consistency,
)

LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
INCLUSION = [
    (1, 0, []),
    (2, 0, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
    (2, 1, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
    (3, 2, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        5,
        1,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        8,
        0,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        8,
        5,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _nodes(leaves: list[bytes], h: merkle.HashFn) -> dict[merkle.Node, bytes]:
    """Every perfect node of the tree, as the sequencer stores them."""
    cr = merkle.CompactRange(h)
    out: dict[merkle.Node, bytes] = {}
    for leaf in leaves:
        out.update(cr.append(merkle.leaf_hash(leaf, h)))
    return out


def test_roots_match_the_ct_vectors() -> None:
    assert merkle.empty_root(sha256).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    cr = merkle.CompactRange(sha256)
    for n in range(1, 9):
        cr.append(merkle.leaf_hash(LEAVES[n - 1], sha256))
        assert cr.root().hex() == ROOTS[n]
        assert merkle.root_of([merkle.leaf_hash(x, sha256) for x in LEAVES[:n]], sha256) == (
            bytes.fromhex(ROOTS[n])
        )


@pytest.mark.parametrize(("size", "index", "expected"), INCLUSION)
def test_inclusion_proofs_match_the_vectors(size: int, index: int, expected: list[str]) -> None:
    nodes = _nodes(LEAVES[:size], sha256)
    proof = merkle.proof_from_nodes(merkle.inclusion_ranges(index, size), nodes, sha256)
    assert [p.hex() for p in proof] == expected
    leaf = merkle.leaf_hash(LEAVES[index], sha256)
    root = bytes.fromhex(ROOTS[size])
    assert merkle.verify_inclusion(leaf, index, size, proof, root, sha256)
    # Any change to the leaf, the position or a proof hash is refused. (The size is
    # bound only through the root: trees of 5 and 6 leaves give leaf 1 one path.)
    assert not merkle.verify_inclusion(sha256(b"x"), index, size, proof, root, sha256)
    assert not merkle.verify_inclusion(leaf, index + 1, size, proof, root, sha256)
    if proof:
        bad = [*proof[:-1], sha256(proof[-1])]
        assert not merkle.verify_inclusion(leaf, index, size, bad, root, sha256)
        assert not merkle.verify_inclusion(leaf, index, size, proof[:-1], root, sha256)


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY)
def test_consistency_proofs_match_the_vectors(first: int, second: int, expected: list[str]) -> None:
    nodes = _nodes(LEAVES[:second], sha256)
    proof = merkle.proof_from_nodes(merkle.consistency_ranges(first, second), nodes, sha256)
    assert [p.hex() for p in proof] == expected
    r1, r2 = bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second])
    assert merkle.verify_consistency(first, second, r1, r2, proof, sha256)
    if first != second:
        assert not merkle.verify_consistency(first, second, r2, r2, proof, sha256)
        assert not merkle.verify_consistency(first, second, r1, r1, proof, sha256)
        assert not merkle.verify_consistency(first, second, r1, r2, proof[:-1], sha256)


def test_sm3_is_the_default_and_agrees_with_the_reference() -> None:
    data = [f"leaf {i}".encode() for i in range(21)]
    nodes = _nodes(data, merkle_sm3)
    for n in range(1, len(data) + 1):
        root = merkle.root_of([merkle.leaf_hash(x) for x in data[:n]])
        assert root == ref_mth(data[:n])
        for m in range(n):
            proof = merkle.proof_from_nodes(merkle.inclusion_ranges(m, n), nodes)
            assert proof == ref_path(m, data[:n])
            assert root_from_path(merkle.leaf_hash(data[m]), m, n, proof) == root
            assert merkle.verify_inclusion(merkle.leaf_hash(data[m]), m, n, proof, root)
        for m in range(1, n + 1):
            proof = merkle.proof_from_nodes(merkle.consistency_ranges(m, n), nodes)
            assert proof == ref_subproof(m, data[:n], True)
            assert roots_from_consistency(m, n, proof, ref_mth(data[:m])) == (
                ref_mth(data[:m]),
                root,
            )
            assert merkle.verify_consistency(m, n, ref_mth(data[:m]), root, proof)


def test_compact_range_resumes_from_stored_edge_nodes() -> None:
    data = [bytes([i]) for i in range(13)]
    nodes = _nodes(data[:11], merkle_sm3)
    edge = [nodes[p] for p in merkle.perfect_pieces(0, 11)]
    cr = merkle.CompactRange(size=11, stack=edge)
    for x in data[11:]:
        cr.append(merkle.leaf_hash(x))
    assert cr.root() == ref_mth(data)
    with pytest.raises(ValueError, match="edge nodes"):
        merkle.CompactRange(size=11, stack=edge[:2])
