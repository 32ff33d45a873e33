"""Package layout: one job per file, no import circles, no private cross-module imports.

Every module of rlsuite/ is read with `ast` (nothing is imported): every import statement counts,
at module level, inside functions and under `if TYPE_CHECKING`, relative ones resolved. An import
`from pkg import name` where `pkg/__init__.py` only re-exports `name` (binds it by `from
pkg.mod import name`) counts as an import of `pkg.mod`, the module that defines it: a package's
interface does not tie its users to every module behind it.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rlsuite"
MAX_LINES = 420


@dataclass(frozen=True)
class Import:
    """One imported module (or one name from it) at one place of an rlsuite module."""

    target: str
    """The rlsuite module imported (after following a package's re-export)."""
    line: int
    where: str
    """'module level' or 'in <function>'."""
    name: str | None = None
    """For `from target import name`: the name, when it is not itself a module."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts).split(".cpython")[0]  # rlsuite/_C.cpython-311-x86_64-linux-gnu.so -> rlsuite._C


@functools.lru_cache(maxsize=1)
def _sources() -> dict[str, Path]:
    """{module name: its .py file} for every Python module of the package."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


@functools.lru_cache(maxsize=1)
def _modules() -> frozenset[str]:
    """Every importable module of the package, compiled extensions included."""
    compiled = {_module_name(p) for p in PACKAGE.rglob("*.so")}
    return frozenset(_sources()) | compiled


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    return ast.parse(_sources()[module].read_text(encoding="utf-8"), str(_sources()[module]))


def _is_package(module: str) -> bool:
    return module in _sources() and _sources()[module].name == "__init__.py"


def _resolve_relative(module: str, level: int, name: str | None) -> str:
    """The absolute module of `from <dots><name> import ...` written in `module`."""
    base = module if _is_package(module) else module.rsplit(".", 1)[0]
    for _ in range(level - 1):
        base = base.rsplit(".", 1)[0]
    return f"{base}.{name}" if name else base


def _owner(dotted: str) -> str | None:
    """The longest prefix of `dotted` that is an rlsuite module (`import a.b.c` runs a.b.c)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in _modules():
            return candidate
    return None


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """A module's statements run at import (or by type checkers): its body, into `if` and `try` blocks."""
    out = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                out += _top_level(handler.body)
    return out


@functools.lru_cache(maxsize=None)
def _reexports(package: str) -> dict[str, str]:
    """{name: module it comes from} for the names `package/__init__.py` binds by `from X import name`."""
    if not _is_package(package):
        return {}
    found = {}
    for node in _top_level(_tree(package).body):
        if isinstance(node, ast.ImportFrom):
            source = _resolve_relative(package, node.level, node.module) if node.level else node.module
            if source and _owner(source) == source:
                for alias in node.names:
                    found[alias.asname or alias.name] = source
    return found


def _defining_module(module: str, name: str, seen: frozenset[str] = frozenset()) -> str:
    """Follow `name` through package re-exports to the module that binds it otherwise."""
    source = _reexports(module).get(name)
    if source is None or source in seen or source == module:
        return module
    return _defining_module(source, name, seen | {module})


def _scopes(tree: ast.Module) -> dict[ast.AST, str]:
    """{import node: 'module level' or 'in <function>'} for every import statement of a module."""
    where: dict[ast.AST, str] = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                where[child] = scope
            inner = f"in {child.name}()" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            visit(child, inner)

    visit(tree, "module level")
    return where


@functools.lru_cache(maxsize=None)
def imports_of(module: str) -> tuple[Import, ...]:
    """Every import of an rlsuite module by `module`."""
    found = []
    for node, where in _scopes(_tree(module)).items():
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name)
                if target:
                    found.append(Import(target, node.lineno, where))
            continue
        source = _resolve_relative(module, node.level, node.module) if node.level else node.module
        if not source or _owner(source) != source:
            continue  # not an rlsuite module
        for alias in node.names:
            if f"{source}.{alias.name}" in _modules():
                found.append(Import(f"{source}.{alias.name}", node.lineno, where))
            else:
                found.append(Import(_defining_module(source, alias.name), node.lineno, where, alias.name))
    return tuple(found)


def import_graph() -> dict[str, set[str]]:
    return {m: {i.target for i in imports_of(m) if i.target != m} for m in _sources()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components)


def test_no_import_circles() -> None:
    graph = import_graph()
    circles = strongly_connected(graph)
    report = []
    for members in circles:
        report.append(f"circle of {len(members)} modules: {', '.join(members)}")
        for m in members:
            for imp in imports_of(m):
                if imp.target in members and imp.target != m:
                    what = f" ({imp.name})" if imp.name else ""
                    report.append(f"    {m} imports {imp.target}{what} at line {imp.line}, {imp.where}")
    assert not circles, ("import circles among rlsuite modules (function-level imports count too); "
                         "move what both sides need into a module both import:\n" + "\n".join(report))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_names_imported_from_other_modules() -> None:
    bad = [f"{m}:{imp.line}: from {imp.target} import {imp.name}"
           for m in _sources() for imp in imports_of(m) if imp.name and _is_private(imp.name)]
    assert not bad, ("private names imported from another module (make them public, or move them to a "
                     "module both use):\n" + "\n".join(bad))


def test_no_private_attributes_of_other_modules() -> None:
    """`from rlsuite.x import y` (a module) then `y._name`: the same reach into another module."""
    bad = []
    for m in _sources():
        aliases = {}
        for node in ast.walk(_tree(m)):
            if isinstance(node, ast.ImportFrom):
                source = _resolve_relative(m, node.level, node.module) if node.level else node.module
                for alias in node.names:
                    if source and f"{source}.{alias.name}" in _modules():
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in _modules():
                        aliases[alias.asname] = alias.name
        for node in ast.walk(_tree(m)):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _is_private(node.attr) and aliases[node.value.id] != m):
                bad.append(f"{m}:{node.lineno}: {node.value.id}.{node.attr} ({aliases[node.value.id]})")
    assert not bad, "private attributes of other rlsuite modules used:\n" + "\n".join(sorted(set(bad)))


def test_no_module_over_the_line_limit() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in _sources().items()}
    over = sorted((n, str(_sources()[m].relative_to(PACKAGE.parent))) for m, n in sizes.items() if n > MAX_LINES)
    assert not over, (f"files over {MAX_LINES} lines (split them by job):\n"
                      + "\n".join(f"    {path}: {n} lines" for n, path in reversed(over)))


def test_every_subpackage_has_a_documented_init() -> None:
    folders = sorted({p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts})
    missing = [str(f.relative_to(PACKAGE.parent)) for f in folders if not (f / "__init__.py").is_file()]
    undocumented = [str(f.relative_to(PACKAGE.parent)) for f in folders
                    if (f / "__init__.py").is_file() and ast.get_docstring(_tree(_module_name(f / "__init__.py"))) is None]
    assert not missing, "folders of rlsuite modules without an __init__.py: " + ", ".join(missing)
    assert not undocumented, ("subpackages whose __init__.py has no docstring (say what the package is for): "
                              + ", ".join(undocumented))
