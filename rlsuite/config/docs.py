"""What `--help` and the docs say about config fields: each field's documentation (its attribute
docstring, read back with `ast`), its type, and a config flattened to (key, value, doc) rows."""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from typing import Any

from rlsuite.config.fields import Check, field_check


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass: {field name: the string literal after it}."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_types(cls: type) -> dict[str, Any]:
    """{field name: its resolved type} of a dataclass (annotations are strings under `from __future__`)."""
    return typing.get_type_hints(cls)


def describe(obj: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """Flatten a config dataclass instance to (key, value, doc) rows for --help and tables."""
    rows = []
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows.extend(describe(value, key + "."))
        else:
            rows.append((key, format_value(value), _with_range(docs.get(f.name, ""), field_check(f))))
    return rows


def _with_range(doc: str, check: Check | None) -> str:
    """The field doc followed by the values the field accepts, for --help."""
    if check is None or check.describe() == "any value":
        return doc
    return f"{doc} Valid: {check.describe()}.".strip()


def format_value(value: Any) -> str:
    """A field's value as --help and error messages print it (tuples comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
