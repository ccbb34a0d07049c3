"""The layering the design rests on, checked on the source.

Layers, lowest first (docs/architecture.md, "Layers", names them; a test below
keeps that table and LAYERS equal). A module may import its own layer and lower
layers, never a higher one. A module's layer is that of its longest matching
package prefix: ``ops.metrics`` is a low leaf, the rest of ``ops`` is top.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (layer name, package prefixes), lowest first.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("engine", ("engine",)),
    ("config", ("config", "protos", "ops.metrics")),
    ("wire", ("wire",)),
    ("storage", ("storage",)),
    ("clients", ("clients",)),
    ("actors", ("actors",)),
    ("usecases", ("usecases",)),
    ("ebill", ("ebill",)),
    # The CLI is the outermost entry point: `ebill run` starts the whole stack
    # through the launcher (ops.stack), so it stands beside it, not with the servers.
    ("ops", ("ops", "bench", "ebill.cli")),
)

# Third-party packages a layer must not import, whatever the layer order says.
BANNED: dict[str, frozenset[str]] = {
    "engine": frozenset({"grpc", "ray", "asyncpg", "protos"}),
    "storage": frozenset({"grpc", "ray", "protos"}),
    "usecases": frozenset({"grpc", "protos"}),
}

_RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}
_NAME = [name for name, _ in LAYERS]


def layer_of(module: str) -> int | None:
    """The rank of ``module`` by its longest package prefix; None outside the layers."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        rank = _RANK.get(".".join(parts[:n]))
        if rank is not None:
            return rank
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import; ``from a import b`` gives ``a.b``, so
    that ``from ops import metrics`` is seen as ``ops.metrics``. Relative imports
    are resolved against ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if alias.name == "*" or not base:
                    yield node.lineno, base or alias.name
                else:
                    yield node.lineno, f"{base}.{alias.name}"


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    module: str
    imports: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.imports} ({self.why})"


def sources(root: Path, dirs: Iterable[str]) -> list[Path]:
    return sorted(
        p
        for d in dirs
        if (root / d).is_dir()
        for p in (root / d).rglob("*.py")
        if "_pb2" not in p.name
    )


def check_layers(root: Path) -> list[Violation]:
    """Every import from a lower layer to a higher one, every banned import and
    every ray import outside actors.pipeline, in the packages of LAYERS under ``root``."""
    tops = sorted({prefix.split(".")[0] for prefix in _RANK})
    out: list[Violation] = []
    for path in sources(root, tops):
        module = module_name(root, path)
        rank = layer_of(module)
        assert rank is not None, module
        banned = BANNED.get(_NAME[rank], frozenset())
        for line, name in imported(path, module):
            rel = path.relative_to(root).as_posix()
            top = name.split(".")[0]
            if top == "ray" and module != "actors.pipeline":
                out.append(Violation(rel, line, module, name, "only actors.pipeline imports ray"))
                continue
            if top in banned:
                out.append(Violation(rel, line, module, name, f"{_NAME[rank]} never imports {top}"))
                continue
            target = layer_of(name)
            if target is not None and target > rank:
                why = f"{_NAME[rank]} is below {_NAME[target]}"
                out.append(Violation(rel, line, module, name, why))
    return out


# -- the rule, on the real tree ------------------------------------------------


def test_no_module_imports_a_higher_layer() -> None:
    bad = check_layers(ROOT)
    assert not bad, "\n".join(map(str, bad))


def test_the_layers_are_the_ones_docs_architecture_names() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`?(\w+)/?`?\s*\|([^|]*)\|", section, re.M)
    documented = [(name, tuple(re.findall(r"`([\w.]+)/?`", pkgs))) for _, name, pkgs in rows]
    assert documented == list(LAYERS)


# -- the checker, on a small tree with one deliberate upward import ------------


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_exactly_the_upward_import(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/model.py": "from __future__ import annotations\nimport dataclasses\n",
            "engine/rules.py": "from engine.model import X\nfrom . import model\n",
            "config/settings.py": "from engine import model\n",
            "ops/__init__.py": "",
            "ops/metrics.py": "import prometheus_client\nfrom engine.model import X\n",
            "storage/__init__.py": "",
            "storage/bills.py": "from ops import metrics\nfrom config import settings\n",
            # The one deliberate upward import: storage reaches up into use cases.
            "storage/paper.py": "import asyncpg\n\nfrom usecases.paper import convert\n",
            "usecases/paper.py": "from storage.paper import x\nfrom . import issuance\n",
            "ebill/server.py": "import grpc\nfrom usecases import paper\nfrom wire import bills\n",
            "ops/stack.py": "from ebill import server\nfrom ops import metrics\n",
            "actors/pipeline.py": "import ray\nfrom storage import bills\n",
            "bench/run.py": "from ops.stack import Stack\nfrom usecases.paper import x\n",
        },
    )
    assert check_layers(tmp_path) == [
        Violation(
            "storage/paper.py", 3, "storage.paper", "usecases.paper.convert",
            "storage is below usecases",
        )
    ]  # fmt: skip


def test_ops_metrics_is_low_and_the_rest_of_ops_is_top(tmp_path: Path) -> None:
    write(tmp_path, {"ops/metrics.py": "from ops import stack\n", "ops/stack.py": ""})
    [v] = check_layers(tmp_path)
    assert (v.module, v.imports, v.why) == ("ops.metrics", "ops.stack", "config is below ops")


def test_relative_upward_imports_are_resolved(tmp_path: Path) -> None:
    write(tmp_path, {"ops/__init__.py": "", "ops/metrics.py": "from . import stack\n"})
    [v] = check_layers(tmp_path)
    assert (v.module, v.imports) == ("ops.metrics", "ops.stack")


def test_banned_packages_per_layer(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "engine/a.py": "import asyncpg\n",
            "storage/a.py": "import grpc.aio\nimport asyncpg\n",
            "usecases/a.py": "from protos.ebill.v1 import bill_pb2\nimport asyncpg\n",
            "clients/a.py": "import grpc\nfrom protos.hsm.v1 import signer_pb2\n",
            "actors/stages.py": "import ray\n",
            "actors/pipeline.py": "import ray\n",
        },
    )
    assert [(v.module, v.imports) for v in check_layers(tmp_path)] == [
        ("actors.stages", "ray"),
        ("engine.a", "asyncpg"),
        ("storage.a", "grpc.aio"),
        ("usecases.a", "protos.ebill.v1.bill_pb2"),
    ]


# -- the original checks -------------------------------------------------------


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_engine_is_a_pure_core() -> None:
    for path in sources(ROOT, ["engine"]):
        bad = imports(path) & {"grpc", "ray", "asyncpg", "protos", "storage", "actors", "ebill"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_storage_never_sees_wire_types() -> None:
    for path in sources(ROOT, ["storage"]):
        bad = imports(path) & {"grpc", "ray", "protos"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_ray_call_lives_in_actors_pipeline() -> None:
    dirs = [*sorted({p.split(".")[0] for _, ps in LAYERS for p in ps}), "tests"]
    users = [p.relative_to(ROOT).as_posix() for p in sources(ROOT, dirs) if "ray" in imports(p)]
    assert users == ["actors/pipeline.py"]
