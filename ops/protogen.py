"""Regenerate Python code and .pyi stubs from protos/ (`make protos`).

Imports in generated code are rooted at the repository (``protos.ebill.v1...``),
so the .proto files import each other by their repository path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def proto_files() -> list[Path]:
    return sorted((ROOT / "protos").glob("*/v1/*.proto"))


def generate(out_dir: Path) -> None:
    """Generate into out_dir, mirroring the repository layout."""
    include = Path(protoc.__file__).parent / "_proto"
    # protoc finds the mypy plugins on PATH: the ones installed beside this Python.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *[str(p.relative_to(ROOT)) for p in proto_files()],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")


def main() -> None:
    generate(ROOT)
    for pkg in {p.parent for p in proto_files()} | {p.parent.parent for p in proto_files()}:
        (pkg / "__init__.py").touch()
    (ROOT / "protos" / "__init__.py").touch()
    print("generated:", *[str(p.relative_to(ROOT)) for p in proto_files()], file=sys.stderr)


if __name__ == "__main__":
    main()
