"""Generated protobuf code in the tree matches the .proto files (run `make protos`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ops import protogen


def test_generated_code_is_fresh() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        protogen.generate(out)
        generated = sorted(p for p in out.rglob("*") if p.is_file())
        assert generated, "protoc produced nothing"
        stale = [
            str(p.relative_to(out))
            for p in generated
            if not (protogen.ROOT / p.relative_to(out)).exists()
            or (protogen.ROOT / p.relative_to(out)).read_bytes() != p.read_bytes()
        ]
        assert not stale, f"generated code is stale, run `make protos`: {stale}"
