"""The layering the design rests on, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def sources(*dirs: str) -> list[Path]:
    return [p for d in dirs for p in (ROOT / d).rglob("*.py") if "_pb2" not in p.name]


def test_engine_is_a_pure_core() -> None:
    for path in sources("engine"):
        bad = imports(path) & {"grpc", "ray", "asyncpg", "protos", "storage", "actors", "ebill"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_storage_never_sees_wire_types() -> None:
    for path in sources("storage"):
        bad = imports(path) & {"grpc", "ray", "protos"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_ray_call_lives_in_actors_pipeline() -> None:
    users = [
        p.relative_to(ROOT).as_posix()
        for p in sources("engine", "storage", "actors", "ebill", "ops", "bench", "tests")
        if "ray" in imports(p)
    ]
    assert users == ["actors/pipeline.py"]
