"""Declared ranges for config fields: each field states the values it accepts where it is declared.

    gamma: float = ranged(0.99, ge=0, le=1)    # then its docstring on the next line, as always

`ranged`, `choice`, `matching`, `checked` and `unchecked` return a `dataclasses.field` whose
metadata holds a `Check`; `rlsuite.config.validate` walks a resolved config once and rejects the
first bad value, so a run never starts (nor makes its run directory) with a value that would only
fail, or silently misbehave, later. The attribute docstring stays on the next line, so
`rlsuite.config.field_docs` still finds it.
"""
from __future__ import annotations

import dataclasses
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

CHECK = "rlsuite.check"
"""The dataclass-field metadata key under which a field's `Check` is stored."""


@dataclass(frozen=True)
class Check:
    """The values one config field accepts: a numeric interval, a set of options, a regular
    expression, or a function; tuples are checked element by element."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    options: tuple[str, ...] = ()
    regex: str | None = None
    func: Callable[[Any], str | None] | None = None
    """Returns None for a good value, or why it is bad."""
    text: str = ""
    """How the accepted values read in messages and --help (set for regex and func checks)."""

    def problem(self, value: Any) -> str | None:
        """None if `value` is acceptable, else the rule it breaks ('must be in [0, 1]')."""
        for item in value if isinstance(value, tuple) else (value,):
            reason = self._item_problem(item)
            if reason is not None:
                return reason
        return None

    def _item_problem(self, value: Any) -> str | None:
        if self.func is not None:
            return self.func(value)
        if self.options:
            return None if value in self.options else f"must be one of {', '.join(self.options)}"
        if self.regex is not None:
            return None if re.fullmatch(self.regex, str(value)) else f"must be one of {self.text}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number {self.describe()}"
        bounds = ((self.ge, operator.ge), (self.gt, operator.gt), (self.le, operator.le), (self.lt, operator.lt))
        if all(bound is None or ok(value, bound) for bound, ok in bounds):
            return None
        return "must be " + self.describe()

    def describe(self) -> str:
        """The accepted values in words: 'in [0, 1]', '>= 1', 'one of mse, huber'."""
        if self.options:
            return "one of " + ", ".join(self.options)
        if self.text:
            return self.text
        low = (f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None)
        high = (f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return "any value"


def _num(x: float) -> str:
    return f"{x:g}"


def ranged(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """A field whose number (or each number of a tuple) must lie in the given bounds."""
    return field(default=default, metadata={CHECK: Check(ge=ge, gt=gt, le=le, lt=lt)})


def choice(default: str, *options: str) -> Any:
    """A field whose string must be one of `options`."""
    if default not in options:
        raise ValueError(f"default {default!r} is not among the options {options}")
    return field(default=default, metadata={CHECK: Check(options=options)})


def matching(default: str, regex: str, text: str) -> Any:
    """A field whose string must match `regex` in full; `text` lists the accepted forms."""
    return field(default=default, metadata={CHECK: Check(regex=regex, text=text)})


def checked(default: Any, func: Callable[[Any], str | None], text: str) -> Any:
    """A field checked by `func` (None = fine, else the reason); `text` describes what is accepted."""
    return field(default=default, metadata={CHECK: Check(func=func, text=text)})


def unchecked(default: Any, text: str) -> Any:
    """A field that accepts any value of its type; `text` says so, explicitly, for --help."""
    return checked(default, lambda _: None, text)


def field_check(f: dataclasses.Field) -> Check | None:
    """The `Check` a dataclass field declares, or None."""
    return f.metadata.get(CHECK)
