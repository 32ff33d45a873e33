"""Writes the configuration reference at build time (mkdocs-gen-files) from the same source as
`rlsuite train --help`: the config dataclasses, their attribute docstrings (`field_docs`) and the
declared ranges and choices (`field_check` and its `Check`). One table per config section and
nested section, one per agent for the `agent` section, then the shipped presets with the first
paragraph of their leading comment.

The helpers are looked up by name in the package's sources, not imported from fixed module paths,
so the page keeps building when modules move between subpackages.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from pathlib import Path
from typing import Any

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rlsuite"
# The shipped presets: the package folder that holds agents/*.toml and envs/*.toml.
PRESETS = next(p for p in sorted(PACKAGE.rglob("presets")) if (p / "agents").is_dir() and (p / "envs").is_dir())


def find(name: str) -> Any:
    """The top-level function or constant `name` defined in exactly one module of the package."""
    pattern = re.compile(rf"^(def {name}\(|{name}\s*(:[^=]*)?=)", re.M)
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if pattern.search(path.read_text(encoding="utf-8")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    if len(modules) != 1:
        raise LookupError(f"expected one rlsuite module to define {name!r}, found {modules or 'none'}")
    return getattr(importlib.import_module(modules[0]), name)


field_docs = find("field_docs")
field_check = find("field_check")
empty_run_config = find("empty_run_config")
SECTIONS = find("SECTIONS")
AGENTS = find("AGENTS")
try:
    DEFAULT_ENV_PRESET = find("DEFAULT_ENV_PRESET")
except LookupError:
    DEFAULT_ENV_PRESET = {}


def type_name(tp: Any) -> str:
    """`float`, `tuple[str, ...]`, `str | None`: module prefixes dropped."""
    text = tp.__name__ if isinstance(tp, type) else str(tp)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text).replace("NoneType", "None")


def value_text(value: Any) -> str:
    """A default as `--set` takes it (tuples comma-separated, as --help shows them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) if value else "(empty)"
    if value == "":
        return "(empty)"
    return str(value)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no raw HTML, no column breaks, no stray links."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|").replace("](", "]\u200b(")
    return text


def code(text: str) -> str:
    text = cell(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def tables(obj: Any, prefix: str, intro: str, lines: list[str], level: int, heading: bool = True) -> None:
    """One table for the dataclass instance `obj` (keys `prefix.field`), under a heading of `level`
    unless the caller wrote one, then one table per nested dataclass one level down."""
    cls = type(obj)
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    if heading:
        lines += ["", "#" * level + f" `{prefix}`"]
    lines += [""]
    intro = intro or class_doc(cls)
    if intro:
        lines += [cell(intro), ""]
    lines += ["| key | type | default | accepted values | description |", "|---|---|---|---|---|"]
    nested = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            nested.append((key, value, docs.get(f.name, "")))
            lines.append(f"| {code(key)} | {cell(type_name(hints.get(f.name, type(value))))} | "
                         f"(section below) | | {cell(docs.get(f.name, ''))} |")
            continue
        check = field_check(f)
        if check is not None:
            accepted = check.describe()
        else:
            accepted = "true, false" if isinstance(value, bool) else "any value"
        lines.append(f"| {code(key)} | {cell(type_name(hints.get(f.name, type(value))))} | "
                     f"{code(value_text(value))} | {cell(accepted)} | {cell(docs.get(f.name, ''))} |")
    for key, value, doc in nested:
        tables(value, key, doc, lines, min(level + 1, 4))


def class_doc(cls: type) -> str:
    """The class docstring as one line, or '' (a dataclass without one gets its signature)."""
    doc = " ".join((cls.__doc__ or "").split())
    return "" if doc.startswith(cls.__name__ + "(") else doc


def leading_comment(path: Path) -> str:
    """The first paragraph of a preset file's leading `#` comment block, as one line."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text:
            if words:
                break
            continue
        words.append(text)
    return " ".join(words)


def preset_table(kind: str, lines: list[str]) -> None:
    folder = PRESETS / kind
    lines += ["| preset | description |", "|---|---|"]
    for path in sorted(folder.glob("*.toml")):
        lines.append(f"| {code(path.stem)} | {cell(leading_comment(path)) or '—'} |")


def main() -> None:
    lines = [
        "# Configuration reference",
        "",
        "Every key a run takes, generated at each build from the config dataclasses: the same field "
        "docstrings and declared ranges that `rlsuite train --help` prints. Set a key with "
        "`--set section.key=value` (a bare key works when it is unique); a run's resolved values are "
        "in `runs/<run>/config.toml`. The defaults below are the dataclass defaults, before any "
        "preset: an agent preset and then an env preset change many of them (see "
        "[getting started](getting-started.md#presets-and-overrides)). A value outside its accepted "
        "values is refused in one line (exit code 2) before the run directory is made.",
        "",
        "Sections: " + ", ".join(f"`{s}`" for s in SECTIONS) + ". The `agent` section depends on the "
        "agent, so it has one table per agent: " + ", ".join(f"`{a}`" for a in AGENTS) + ".",
    ]
    for section in SECTIONS:
        if section == "agent":
            for algo in AGENTS:
                cfg = empty_run_config(algo)
                lines += ["", f"## `agent` of `{algo}`"]
                tables(cfg.agent, "agent", class_doc(type(cfg.agent)), lines, 2, heading=False)
            continue
        cfg = empty_run_config("dqn")
        obj = getattr(cfg, section)
        lines += ["", f"## `{section}`"]
        tables(obj, section, class_doc(type(obj)), lines, 2, heading=False)
    lines += ["", "## Presets", "",
              "Presets are TOML recipes shipped inside the package; `rlsuite list` prints their names. "
              "An agent preset (`agents/<name>.toml`) names the agent and its settings; an env preset "
              "(`envs/<name>.toml`) states the environment protocol. The description is the first "
              "paragraph of the file's own comment.", "", "### Agent presets", ""]
    preset_table("agents", lines)
    lines += ["", "### Env presets", ""]
    if DEFAULT_ENV_PRESET:
        lines += ["A bare env id gets its family's env preset: " + ", ".join(
            f"{family} → `{preset}`" for family, preset in DEFAULT_ENV_PRESET.items())
            + " (an agent preset can choose another; `dqn-cleanrl` picks `atari-cleanrl`).", ""]
    preset_table("envs", lines)
    with mkdocs_gen_files.open("configuration.md", "w") as fh:
        fh.write("\n".join(lines) + "\n")


main()
