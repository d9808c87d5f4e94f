"""The house keeps standing: the layering that docs/ARCHITECTURE.md describes holds.

Only the binding layer (tape/_native/) imports the compiled core, nothing in
the library imports the CLI, no two modules import each other at import time,
and `import tape` loads no optional dependency. (The C core's call graph is
checked by the C test suite.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tape"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


class _Imports(ast.NodeVisitor):
    """The modules a module's code imports, leaving out `if TYPE_CHECKING:` blocks
    (and, with top_level_only, what functions import when they run)."""

    def __init__(self, package: str, top_level_only: bool) -> None:
        self.package = package
        self.top_level_only = top_level_only
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for inner in node.orelse:
                self.visit(inner)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if not self.top_level_only:
            self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
        self.found.add(base)
        self.found.update(f"{base}.{alias.name}" for alias in node.names)  # `from tape import codecs`


def _imports(module: str, *, top_level_only: bool, prefix: str = "tape") -> set[str]:
    """The modules of tape (and tape._core), or of `prefix`, that `module` imports, and the names it takes from them."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    finder = _Imports(package, top_level_only)
    finder.visit(ast.parse(path.read_text(), str(path)))
    return {name for name in finder.found if name == prefix or name.startswith(prefix + ".")}


def test_only_the_binding_layer_imports_the_compiled_core() -> None:
    importers = {m for m in MODULES if "tape._core" in _imports(m, top_level_only=False)}
    assert importers == {"tape._native.core"}
    outside = sorted(m for m in MODULES if not m.startswith("tape._native") and _imports(m, top_level_only=False) & {
        "tape._native.core", "tape._native.core.ffi", "tape._native.core.lib"})
    assert outside == []


def test_nothing_in_the_library_imports_the_cli() -> None:
    cli = {m for m in MODULES if m == "tape.cli" or m.startswith("tape.cli.")}
    library = set(MODULES) - cli - {"tape.__main__"}
    importers = sorted(m for m in library if _imports(m, top_level_only=False) & cli)
    assert importers == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph`, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_no_two_modules_import_each_other_at_import_time() -> None:
    graph = {}
    for m in MODULES:
        imported = _imports(m, top_level_only=True) - {m}
        # A submodule importing its own package is how packages work, not a cycle.
        graph[m] = {i for i in imported if not m.startswith(i + ".")}
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_only_tape_replicate_imports_nats() -> None:
    importers = {m for m in MODULES if _imports(m, top_level_only=False, prefix="nats")}
    assert importers and all(m.startswith("tape.replicate") for m in importers)


def test_only_the_cli_imports_tape_replicate_from_outside() -> None:
    outside = {m for m in MODULES if not m.startswith("tape.replicate")}
    importers = sorted(m for m in outside if _imports(m, top_level_only=False, prefix="tape.replicate"))
    assert importers == ["tape.cli"]
    assert not _imports("tape.cli", top_level_only=True, prefix="tape.replicate")  # only when a command runs


@pytest.mark.parametrize("optional", ["click", "fastavro", "lz4", "multiprocessing", "tape.cli", "tape.replicate", "nats"])
def test_import_tape_loads_no_optional_dependency(optional: str) -> None:
    code = f"import sys, tape, tape.testing; sys.exit({optional!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
