"""Values into a config: checking a resolved config (each field's declared range, then the rules
between fields), converting `--set` text and TOML values to the fields' types, and applying TOML
tables and `--set key=value` overrides, with one-line errors that name the bad key."""
from __future__ import annotations

import dataclasses
import difflib
import operator
import typing
from typing import Any

from rlsuite.config.docs import describe, field_types, format_value
from rlsuite.config.fields import field_check
from rlsuite.config.schema import SECTIONS, RunConfig
from rlsuite.errors import UserError


# ----------------------------------------------------------------------------- validation


# Rules between fields (key, comparison, other key); a rule whose keys the config lacks (another
# agent's config) is skipped. Single-field ranges live on the fields themselves.
CROSS_RULES = (
    ("agent.gmp.start", "<=", "agent.gmp.end"),
    ("replay.capacity", ">=", "agent.batch_size"),
)
_COMPARE = {"<=": operator.le, ">=": operator.ge}


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every field of a resolved config (nested dataclasses included) against its declared
    range or choices, then the cross-field rules; raise a one-line UserError naming the first bad key."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        check = field_check(f)
        reason = check.problem(value) if check is not None else None
        if reason is not None:
            raise UserError(f"bad value for {key}: {format_value(value) or '(empty)'} ({reason})")
    if isinstance(cfg, RunConfig):
        _validate_cross_rules(cfg)


def _validate_cross_rules(cfg: RunConfig) -> None:
    """The rules between fields, checked once every field is known to be in range."""
    for key, op, other in CROSS_RULES:
        left, right = _lookup(cfg, key), _lookup(cfg, other)
        if left is not None and right is not None and not _COMPARE[op](left, right):
            raise UserError(f"bad value for {key}: {left} (must be {op} {other} = {right})")
    check_run = getattr(cfg.agent, "check_run", None)  # an agent's own rules with other sections' keys
    if check_run is not None:
        check_run(cfg)
    train = cfg.train
    if train.tasks and train.steps_per_task < 1:
        raise UserError(f"bad value for train.steps_per_task: {train.steps_per_task} "
                        "(train.tasks needs train.steps_per_task > 0; --steps-per-task N)")


def _lookup(cfg: Any, key: str) -> Any:
    """The value at a dotted key, or None if the config has no such field."""
    for part in key.split("."):
        cfg = getattr(cfg, part, None)
        if cfg is None:
            return None
    return cfg


# ----------------------------------------------------------------------------- values from text and TOML


def parse_value(text: str, typ: Any, key: str) -> Any:
    """Convert an override string to the field's type, or raise a one-line UserError."""
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            number = float(text.replace("_", ""))
            if number != int(number):
                raise ValueError
            return int(number)
        if typ is float:
            return float(text)
        if typ is str:
            return text
        if origin is tuple:
            inner = typing.get_args(typ)[0]
            parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
            return tuple(parse_value(p.strip(), inner, key) for p in parts)
    except ValueError:
        pass
    else:
        raise UserError(f"config key '{key}' has unsupported type {typ}")
    type_name = getattr(typ, "__name__", str(typ))
    raise UserError(f"bad value for '{key}': {text!r} is not a valid {type_name}")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check/convert a value read from TOML against the declared field type."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(typ) is tuple and isinstance(value, list):
        return tuple(value)
    if typ in (bool, int, float, str) and not isinstance(value, typ):
        return parse_value(str(value), typ, key)
    return value


# Keys renamed after runs were written with the old name: {old full key: new leaf name}, so the
# config.toml and checkpoints of those runs still load (resume, eval, compare).
RENAMED_KEYS = {"finetune.bc.batch_size": "minibatch"}


def apply_table(obj: Any, table: dict[str, Any], prefix: str, source: str) -> None:
    """Set dataclass fields from a (possibly nested) TOML table; unknown keys are errors."""
    types = field_types(type(obj))
    for name, value in table.items():
        name = RENAMED_KEYS.get(f"{prefix}{name}", name)
        key = f"{prefix}{name}"
        if name not in types:
            raise UserError(f"unknown config key '{key}' in {source}{_suggest(name, list(types))}")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"config key '{key}' in {source} must be a table")
            apply_table(current, value, key + ".", source)
        else:
            setattr(obj, name, _coerce(value, types[name], key))


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return f"; did you mean: {', '.join(close)}?" if close else ""


# ----------------------------------------------------------------------------- overrides


def all_keys(cfg: RunConfig) -> list[str]:
    """Every settable key of a run config, dotted ('agent.encoder.width')."""
    return [key for section in SECTIONS for key, _, _ in describe(getattr(cfg, section), section + ".")]


def apply_override(cfg: RunConfig, assignment: str) -> None:
    """Apply one `--set key=value`. Keys are `section.field` (nested with dots) or a bare
    field name that is unique across sections (`lr=1e-4`)."""
    if "=" not in assignment:
        raise UserError(f"bad override {assignment!r}: expected key=value, e.g. --set agent.lr=1e-4")
    key, text = (part.strip() for part in assignment.split("=", 1))
    full_key = _resolve_key(cfg, key)
    *path, leaf = full_key.split(".")
    target: Any = cfg
    for part in path:
        target = getattr(target, part)
    typ = field_types(type(target))[leaf]
    setattr(target, leaf, parse_value(text, typ, full_key))


def _resolve_key(cfg: RunConfig, key: str) -> str:
    keys = all_keys(cfg)
    if key in keys:
        return key
    matches = [k for k in keys if k.endswith("." + key)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"override key '{key}' is ambiguous: use one of {', '.join(matches)}")
    leaves = [k.split(".")[-1] for k in keys]
    close = difflib.get_close_matches(key, keys + leaves, n=3, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    raise UserError(f"unknown config key '{key}'{hint} ('rlsuite train --help' lists all keys)")
