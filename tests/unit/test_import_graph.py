"""No import cycles in firebreak/ (issue 29): no module imports, directly or through others, a
module that imports it. Read with ast from the source, every import counted, those inside
functions too (an import put off to run time is still a dependency, and a cycle hidden that way
is still a knot a newcomer has to untie).

`from pkg import name` counts as an import of pkg.name when that is a module, else of pkg; a
package's __init__ is a module like any other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "firebreak"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The firebreak modules that the module at `path` imports."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != me}


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the firebreak modules it imports."""
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The knots of the graph (Tarjan's strongly connected components of more than one module,
    or one that imports itself), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in g.get(v, ()):
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_knots_and_only_knots():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    assert cycles({"a": {"a"}}) == [["a"]]


def test_the_reader_sees_the_imports_it_should():
    g = graph()
    assert "firebreak.drill.harness" in g["firebreak.drill.cluster_run"]
    assert "firebreak.drill.estate_run" in g["firebreak.drill.runner"]
    assert "firebreak.control.console_status" in g["firebreak.control.console"]
    assert "firebreak.errors" in g["firebreak.inputs"]  # `from firebreak.errors import ...`
    assert sum(len(v) for v in g.values()) > 100


def test_no_module_imports_a_module_that_imports_it():
    g = graph()
    knots = cycles(g)
    assert not knots, "import cycles (each line: modules that import one another):\n  " + "\n  ".join(
        ", ".join(k) + "; edges: " + "; ".join(f"{a} -> {b}" for a in k for b in sorted(g[a]) if b in k)
        for k in knots)
