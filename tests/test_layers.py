"""The layers of docs/architecture.md, kept true: no import cycle and no upward import in nas_attn/.

Every import counts, at module level or inside a function (a lazy import is still a dependency);
only imports under ``if TYPE_CHECKING:`` are left out, since they never run. Each top-level part
of the package has a rank; a module may import its own part and parts of a lower rank, never a
part of its own rank or above. Inside a part, modules must not import each other in a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nas_attn"

# Lowest first; each row is one rank. Keep this table and docs/architecture.md's in step.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_imports", "files"),
    ("registry", "yamlio", "pareto", "weights", "onnx_export"),
    ("objectives",),
    ("config", "hparams"),
    ("modules", "plugins"),
    ("backbones",),
    ("arch",),
    ("cost", "data"),
    ("train_state", "testing"),
    ("train",),
    ("space",),
    ("latency", "oneshot"),
    ("search",),
    ("viz",),
    ("ablation",),
    ("export",),
    ("cli",),
    ("__main__",),
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """Every nas_attn module or name ``path`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return {t for t in found if t == "nas_attn" or t.startswith("nas_attn.")}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in files.items():
        for target in _imports(path):
            if target in files and target != name:
                graph[name].add(target)
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert parts - set(RANK) == set(), "add these parts to LAYERS (and docs/architecture.md)"


def test_no_import_reaches_up_or_sideways_across_parts():
    wrong = sorted(
        f"{source} imports {target} ({_part(source)} rank {RANK.get(_part(source))}, "
        f"{_part(target)} rank {RANK.get(_part(target))})"
        for source, targets in _graph().items() for target in targets
        if _part(source) not in ("__init__", _part(target))
        and RANK.get(_part(target), -1) >= RANK.get(_part(source), -1))
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}}, []),
])
def test_cycle_finder_finds_exactly_the_cycles(graph, expected):
    assert _cycles(graph) == expected


def test_imports_under_type_checking_are_left_out_and_lazy_ones_kept(tmp_path, monkeypatch):
    pkg = tmp_path / "nas_attn"
    pkg.mkdir()
    source = pkg / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from nas_attn.errors import ConfigError\n"
        "if TYPE_CHECKING:\n    from nas_attn.arch import ArchSpec\n"
        "def f():\n    from . import search\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert _imports(source) == {"nas_attn.errors", "nas_attn.errors.ConfigError",
                                "nas_attn", "nas_attn.search"}


MAX_LINES = 450  # small files with one purpose (docs/architecture.md)


def test_no_file_in_the_package_is_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these by purpose (limit {MAX_LINES} lines)"
