"""Typed run configuration: presets (TOML recipes), `--set` overrides, the resolved dump.

A run is described by one `RunConfig`: which agent, its config dataclass, the environment,
the replay buffer and the training loop. Values come, in order of precedence, from
`--set` overrides, then the agent preset (`agents/<name>.toml`), then the env preset
(`envs/<name>.toml`), then the dataclass defaults. The resolved config is written to
`runs/<run>/config.toml`, and `rlsuite train --config that/file` relaunches the run.

This module is the package's public interface: the names the rest of rlsuite uses as `config.X`.
Each lives in the module that does its one job: `schema` (TrainConfig, RunConfig, SECTIONS),
`fields` (the values each field accepts), `docs` (field documentation for --help), `values`
(validation, value parsing, TOML tables, `--set` overrides), `toml` (reading and writing config
files), `presets` (the shipped preset files) and `build` (a run's config from presets, a saved
file and overrides).

The names are loaded on first use, not when this package is imported. The section configs of
`RunConfig` (rlsuite.retention.config, rlsuite.data.config, the agents' configs) import
`rlsuite.config.fields`, which runs this file first: importing `schema` here would import them
back while they are half-initialised, so `import rlsuite.retention.config` in a fresh interpreter
would fail.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers and readers; at run time __getattr__ loads them
    from rlsuite.config.build import (DEFAULT_ENV_PRESET, apply_env, apply_file, build_run_config,
                                      empty_run_config)
    from rlsuite.config.docs import describe, field_docs
    from rlsuite.config.presets import preset_names, preset_path
    from rlsuite.config.schema import SECTIONS, RunConfig, TrainConfig
    from rlsuite.config.toml import dumps_toml, read_toml, to_dict
    from rlsuite.config.values import apply_override, apply_table, parse_value, validate

_HOMES = {
    "build": ("DEFAULT_ENV_PRESET", "apply_env", "apply_file", "build_run_config", "empty_run_config"),
    "docs": ("describe", "field_docs"),
    "presets": ("preset_names", "preset_path"),
    "schema": ("SECTIONS", "RunConfig", "TrainConfig"),
    "toml": ("dumps_toml", "read_toml", "to_dict"),
    "values": ("apply_override", "apply_table", "parse_value", "validate"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    """`config.X` for a public name: import its module and keep the name here for the next use.
    A submodule's name (`config.fields`) imports that submodule, as the eager package did."""
    if name in _HOMES or name == "fields":
        return importlib.import_module(f"{__name__}.{name}")
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
