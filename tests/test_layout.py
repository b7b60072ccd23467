"""The layout rules of ARCHITECTURE.md, checked over the source of ``diagnostics/``.

- No module is longer than :data:`MAX_LINES` unless its docstring says why (a sentence that
  names the limit, "longer than 600 lines because ...") or it is in :data:`OVERSIZED`.
- No import cycle: the graph of every import between our modules (at the top, inside a
  function or under ``TYPE_CHECKING`` alike) has no cycle but those in :data:`KNOWN_CYCLES`.

The two tables name today's exceptions with their reason. A new offender fails; so does an
entry that no longer applies, so that the tables shrink as the code is fixed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diagnostics"
MAX_LINES = 600

# path (relative to diagnostics/) -> why it is longer than MAX_LINES today.
OVERSIZED: dict[str, str] = {
    "cli.py": (
        "the parser builder (every command's options and help, about 190 lines) and one short "
        "function per command; what they print is rendered by report/terminal.py"
    ),
}

# Modules that import each other, and why the cycle is still there.
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports, wherever in the file the import is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from diagnostics.parse import spf` imports the module spf; `from
                # diagnostics.report.model import Report` imports diagnostics.report.model.
                if f"{base}.{alias.name}" in known:
                    targets.add(f"{base}.{alias.name}")
                elif base in known:
                    targets.add(base)
    targets.discard(name)
    return targets


def cycles(graph: dict[str, set[str]]) -> Iterator[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[frozenset[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                yield from visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                yield frozenset(component)

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def line_counts() -> dict[str, int]:
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }


def says_why_it_is_long(path: Path) -> bool:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return f"longer than {MAX_LINES} lines because" in " ".join(docstring.split()).lower()


def test_no_module_is_longer_than_the_limit_without_a_reason() -> None:
    too_long = {
        name: count
        for name, count in line_counts().items()
        if count > MAX_LINES and name not in OVERSIZED and not says_why_it_is_long(PACKAGE / name)
    }
    assert too_long == {}, (
        f"split these modules, or say in the docstring why one is longer than {MAX_LINES} "
        f"lines because it is one thing: {too_long}"
    )


def test_every_listed_long_module_is_still_long() -> None:
    counts = line_counts()
    fixed = sorted(name for name in OVERSIZED if counts.get(name, 0) <= MAX_LINES)
    assert fixed == [], f"remove from OVERSIZED, they are no longer too long: {fixed}"
    # A reader of the module learns it too, not only a reader of this test.
    unsaid = [
        name
        for name in OVERSIZED
        if f"longer than {MAX_LINES} lines"
        not in " ".join(
            (ast.get_docstring(ast.parse((PACKAGE / name).read_text())) or "").split()
        ).lower()
    ]
    assert unsaid == [], f"say in these modules' docstrings why they are long: {unsaid}"


def test_the_package_has_no_import_cycle() -> None:
    found = set(cycles(import_graph()))
    new = [sorted(cycle) for cycle in found - set(KNOWN_CYCLES)]
    assert new == [], f"modules that import each other (move what both need down): {new}"
    gone = [sorted(cycle) for cycle in set(KNOWN_CYCLES) - found]
    assert gone == [], f"remove from KNOWN_CYCLES, the cycle is broken: {gone}"


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """What the cycle test relies on: imports inside functions and under TYPE_CHECKING count,
    relative imports resolve, and `from package import module` names the module."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (root / "sub" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.b import X\n"
    )
    (root / "sub" / "b.py").write_text("def f():\n    from .a import Y\n    from pkg import c\n")
    (root / "c.py").write_text("import pkg.sub.a\n")
    known = {
        "pkg": root / "__init__.py",
        "pkg.sub": root / "sub" / "__init__.py",
        "pkg.sub.a": root / "sub" / "a.py",
        "pkg.sub.b": root / "sub" / "b.py",
        "pkg.c": root / "c.py",
    }
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert graph == {
        "pkg": set(),
        "pkg.sub": {"pkg.sub.b"},
        "pkg.sub.a": {"pkg.sub.b"},
        "pkg.sub.b": {"pkg.sub.a", "pkg.c"},
        "pkg.c": {"pkg.sub.a"},
    }
    assert set(cycles(graph)) == {frozenset({"pkg.sub.a", "pkg.sub.b", "pkg.c"})}
