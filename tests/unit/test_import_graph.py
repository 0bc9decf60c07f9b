"""Imports run only downward: every `danlu` import (module level or inside a function) goes to a
module of the same layer or a lower one, and no module imports itself round a loop.

The layer order (ARCHITECTURE.md draws it): a module's layer is that of the longest prefix below
that names it. Adding a package means adding it here, at the height of what it imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# lowest first; a module may import from its own layer and the ones above it in this list
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("danlu", "danlu.errors", "danlu.registry", "danlu.paths", "danlu.log", "danlu.faults",
              "danlu.schema_base", "danlu.runplan", "danlu.diskspace",  # runplan: torch-free run decisions (h22b)
              "danlu.progress", "danlu.files")),  # progress bars and artefact file modes, used at every layer
    ("chat", ("danlu.chat",)),  # messages, chat templates, tool calls (pure text: no weights)
    ("models", ("danlu.models",)),  # loading weights and tokenizers (a GGUF conversion writes a chat template)
    ("data", ("danlu.data", "danlu.interop")),  # interop: LLaMA-Factory datasets read as `lf:` sources
    ("methods", ("danlu.methods",)),
    ("infer", ("danlu.infer",)),
    ("eval", ("danlu.eval",)),
    ("train", ("danlu.train",)),  # the Trainer mixin, callbacks, checkpoints, loss: what stages build on
    ("stages", ("danlu.stages",)),
    ("config", ("danlu.config",)),  # RunConfig assembled from the method, stage and metric registries
    ("plan", ("danlu.plan",)),
    ("run", ("danlu.train.runner",)),  # `danlu train`: preflight (plan) → build → fit → save
    ("tune", ("danlu.tune",)),
    ("apps", ("danlu.export", "danlu.serve", "danlu.soup", "danlu.bench", "danlu.workbench", "danlu.synth",
              "danlu.interop.llamafactory.config")),
    ("ui", ("danlu.ui",)),
    ("cli", ("danlu.cli", "danlu.__main__")),
]
RANK = {prefix: i for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}

# arrows that still point up, each with the reason and who removes it (empty: none left)
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANK:
            return RANK[".".join(parts[:n])]
    raise KeyError(module)


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The danlu modules `path` imports, anywhere in it (`from danlu.x import y` counts as danlu.x.y
    when y is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    return {name for name in found if name == "danlu" or name.startswith("danlu.")} - {module}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in sorted((SRC / "danlu").rglob("*.py"))}
    known = set(files)
    return {m: {t for t in imports_of(p, m, known) if t in known} for m, p in files.items()}


def upward_arrows(edges: dict[str, set[str]]) -> list[str]:
    return [f"{src} (layer {LAYERS[layer_of(src)][0]}) imports {dst} (layer {LAYERS[layer_of(dst)][0]})"
            for src, targets in sorted(edges.items()) for dst in sorted(targets)
            if layer_of(dst) > layer_of(src) and (src, dst) not in ALLOWED_UPWARD]


def loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each a loop of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between top-level packages (danlu.x), a package's modules merged into one."""
    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for src, targets in edges.items():
        out.setdefault(top(src), set()).update(top(t) for t in targets if top(t) != top(src))
    return out


def test_every_module_has_a_layer():
    missing = [m for m in graph() if not any(m == p or m.startswith(p + ".") for p in RANK)]
    assert not missing, f"add these to LAYERS in {__file__}: {missing}"


def test_imports_only_run_downward():
    arrows = upward_arrows(graph())
    assert not arrows, "imports that run back up the layers:\n  " + "\n  ".join(arrows)


def test_no_import_loops():
    found = loops(graph())
    assert not found, "modules that import each other round a loop:\n  " + "\n  ".join(map(" ↔ ".join, found))


def test_no_module_named_like_the_standard_library():
    shadows = [m for m in graph() if m.rpartition(".")[2] in sys.stdlib_module_names]
    assert not shadows, f"rename these (they shadow the standard library): {shadows}"


@pytest.mark.parametrize("edges, expected", [
    ({"danlu.data.a": {"danlu.train.b"}, "danlu.train.b": set()}, 1),  # data importing train: up
    ({"danlu.train.b": {"danlu.data.a"}, "danlu.data.a": set()}, 0),
    ({"danlu.train.runner": {"danlu.plan.x"}, "danlu.plan.x": {"danlu.train.levers"}}, 0),
    ({"danlu.plan.x": {"danlu.train.runner"}}, 1),  # the runner sits above plan
    ({"danlu.eval.judge": {"danlu.config.schema"}}, 1),
])
def test_the_checker_sees_an_upward_arrow(edges, expected):
    assert len(upward_arrows(edges)) == expected


def test_the_checker_sees_a_loop():
    edges = {"danlu.plan.a": {"danlu.plan.b"}, "danlu.plan.b": {"danlu.plan.c"}, "danlu.plan.c": {"danlu.plan.a"},
             "danlu.plan.d": {"danlu.plan.a"}}
    assert loops(edges) == [["danlu.plan.a", "danlu.plan.b", "danlu.plan.c"]]
    assert loops({"danlu.plan.a": {"danlu.plan.b"}, "danlu.plan.b": set()}) == []


def test_the_parser_reads_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "danlu" / "plan"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from danlu.train.runner import run_training\n"
                              "from . import y\nfrom ..data import encode\n")
    module = "danlu.plan.x"
    found = imports_of(pkg / "x.py", module, {"danlu.plan.y", "danlu.data.encode"})
    assert found == {"danlu.train.runner", "danlu.plan", "danlu.plan.y", "danlu.data", "danlu.data.encode"}
