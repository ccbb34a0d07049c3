"""engine.audit: the offline verifier names the first leaf removed, altered or
reordered in an exported log, and refuses heads under another key."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from engine.audit import head_to_json, leaf_to_json
from engine.merkle import CompactRange
from engine.sm2 import SigningKey, sm3
from engine.translog import Leaf, SignedHead, StoredLeaf, TreeHead
from usecases.translog import verify_lines

KEY = SigningKey.generate()
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def exported(n: int = 10, head_at: tuple[int, ...] = (4, 10)) -> list[str]:
    cr = CompactRange()
    lines: list[str] = []
    for i in range(n):
        leaf = Leaf(i, "bill.issue", f"cashier {i}", "U1", f"44060119/{i:010d}",
                    T0 + timedelta(seconds=i), sm3(bytes([i])))  # fmt: skip
        cr.append(leaf.hash())
        lines.append(leaf_to_json(StoredLeaf(leaf, leaf.hash())))
        if i + 1 in head_at:
            head = TreeHead(i + 1, cr.root(), T0 + timedelta(seconds=i))
            lines.append(head_to_json(SignedHead(head, KEY.sign(head.message()), "k", b"")))
    return lines


def edit(lines: list[str], at: int, **fields: object) -> list[str]:
    out = []
    for line in lines:
        obj = json.loads(line)
        if obj.get("leaf", {}).get("index") == at:
            obj["leaf"].update(fields)
        out.append(json.dumps(obj, ensure_ascii=False))
    return out


def test_an_untouched_export_verifies() -> None:
    report = verify_lines(exported(), KEY.public)
    assert report.ok, report.findings
    assert (report.leaves, report.heads_checked) == (10, 2)


def test_an_altered_leaf_is_named() -> None:
    report = verify_lines(edit(exported(), 6, principal="mallory"), KEY.public)
    assert report.first is not None
    assert (report.first.index, report.first.kind) == (6, "altered")
    assert any(f.kind == "head" for f in report.findings)  # the head of 10 no longer matches


def test_a_removed_leaf_is_named() -> None:
    lines = [ln for ln in exported() if json.loads(ln).get("leaf", {}).get("index") != 2]
    report = verify_lines(lines, KEY.public)
    assert report.first is not None
    assert (report.first.index, report.first.kind) == (2, "removed")


def test_leaves_cut_off_the_end_are_named() -> None:
    lines = [ln for ln in exported() if json.loads(ln).get("leaf", {}).get("index", 0) < 8]
    report = verify_lines(lines, KEY.public)
    assert report.first is not None
    assert (report.first.index, report.first.kind) == (8, "removed")


def test_swapped_leaves_are_named_as_reordered() -> None:
    lines = exported()
    moved = [json.loads(ln) for ln in lines]
    for obj in moved:
        if "leaf" in obj and obj["leaf"]["index"] in (3, 7):
            obj["leaf"]["index"] = 10 - obj["leaf"]["index"]
    lines = [json.dumps(obj, ensure_ascii=False) for obj in moved]
    report = verify_lines(lines, KEY.public)
    assert report.first is not None
    assert (report.first.index, report.first.kind) == (3, "reordered")
    assert "recorded as leaf 7" in report.first.message


def test_a_rewritten_log_with_recomputed_hashes_fails_at_the_signed_head() -> None:
    # The forger rewrote leaf 5 and its stored hash: only the signed head tells.
    lines = exported()
    forged = Leaf(5, "bill.issue", "mallory", "U1", "44060119/0000000005",
                  T0 + timedelta(seconds=5), sm3(b"x"))  # fmt: skip
    for i, line in enumerate(lines):
        if json.loads(line).get("leaf", {}).get("index") == 5:
            lines[i] = leaf_to_json(StoredLeaf(forged, forged.hash()))
    report = verify_lines(lines, KEY.public)
    assert report.first is not None
    assert report.first.kind == "head" and "[4, 10)" in report.first.message


def test_heads_under_another_key_are_refused() -> None:
    report = verify_lines(exported(), SigningKey.generate().public)
    assert {f.kind for f in report.findings} == {"signature"}
