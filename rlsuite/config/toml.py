"""Config files in TOML: reading one (preset or a run's config.toml) with one-line errors, and
writing a resolved config back as the `runs/<run>/config.toml` that `rlsuite train --config` relaunches."""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from rlsuite.config.docs import field_docs
from rlsuite.config.schema import SECTIONS, RunConfig
from rlsuite.errors import UserError


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a one-line UserError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None


def to_dict(obj: Any) -> Any:
    """A config as plain data (dicts, lists, scalars): what config.toml holds."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def dumps_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML (one table per section, nested tables dotted)."""
    lines = ["# Resolved rlsuite config. Relaunch with: rlsuite train --config <this file>", ""]
    lines.append(f'algo = "{cfg.algo}"')
    lines.append(f"presets = {_toml_value(cfg.presets)}")
    for section in SECTIONS:
        _dump_table(lines, section, getattr(cfg, section))
    return "\n".join(lines) + "\n"


def _dump_table(lines: list[str], name: str, obj: Any) -> None:
    docs = field_docs(type(obj))
    lines += ["", f"[{name}]"]
    nested = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            nested.append((f.name, value))
            continue
        doc = docs.get(f.name, "")
        comment = f"  # {doc[:100]}" if doc else ""
        lines.append(f"{f.name} = {_toml_value(value)}{comment}")
    for child, value in nested:
        _dump_table(lines, f"{name}.{child}", value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")
