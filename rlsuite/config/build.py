"""Building a run's config: the agent preset (or a saved config.toml), the env preset, `--set`
overrides, in that order of precedence over the dataclass defaults, then validation."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from rlsuite.config.presets import preset_names, preset_path
from rlsuite.config.schema import SECTIONS, RunConfig
from rlsuite.config.toml import read_toml
from rlsuite.config.values import apply_override, apply_table, validate
from rlsuite.errors import UserError


# Which env preset a bare env id gets, by family (`--env pong` -> atari-dopamine with id Pong).
DEFAULT_ENV_PRESET = {"atari": "atari-dopamine", "nethack": "nethack", "minatar": "minatar", "classic": "cartpole",
                      "closefar": "closefar"}


def empty_run_config(algo: str) -> RunConfig:
    """A RunConfig of `algo` at the dataclass defaults (no preset applied)."""
    from rlsuite.agents import AGENTS, agent_classes
    from rlsuite.envs import EnvConfig
    from rlsuite.replay import ReplayConfig

    if algo not in AGENTS:
        raise UserError(f"unknown agent '{algo}'; available: {', '.join(AGENTS)} "
                        f"(presets: {', '.join(preset_names('agents'))})")
    _, agent_config_cls = agent_classes(algo)
    return RunConfig(algo=algo, agent=agent_config_cls(), env=EnvConfig(), replay=ReplayConfig())


def apply_file(cfg: RunConfig, data: dict[str, Any], source: str) -> None:
    """Apply a config file's section tables to `cfg`; an unknown table is a UserError naming `source`."""
    for section in SECTIONS:
        if section in data:
            apply_table(getattr(cfg, section), data[section], section + ".", source)
    unknown = set(data) - set(SECTIONS) - {"algo", "presets"}
    if unknown:
        raise UserError(f"unknown table(s) {', '.join(sorted(unknown))} in {source}; expected {', '.join(SECTIONS)}")


def build_run_config(agent: str | None = None, env: str | None = None, overrides: list[str] | None = None,
                     config_file: str | Path | None = None) -> RunConfig:
    """Resolve an agent preset (or a saved config.toml), an env, and `--set` overrides."""
    if config_file is not None:
        data = read_toml(Path(config_file))
        cfg = empty_run_config(data.get("algo", ""))
        apply_file(cfg, data, str(config_file))
        cfg.presets = list(data.get("presets", []))
    else:
        if not agent:
            raise UserError("name an agent or preset (e.g. 'rlsuite train dqn --env pong') or pass --config")
        cfg = _from_presets(agent, env)
    for assignment in overrides or []:
        apply_override(cfg, assignment)
    validate(cfg)  # before any command creates a run directory or starts work
    return cfg


def _from_presets(agent: str, env: str | None) -> RunConfig:
    path = preset_path("agents", agent)
    if path is None:
        names = preset_names("agents")
        close = difflib.get_close_matches(agent, names, n=3, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise UserError(f"unknown agent or preset '{agent}'{hint} (available: {', '.join(names)})")
    data = read_toml(path)
    cfg = empty_run_config(data.get("algo", agent))
    env = env or data.get("default_env")
    if env is None:
        raise UserError("name an environment with --env (e.g. --env pong); 'rlsuite list envs' shows them")
    apply_env(cfg, env, {**DEFAULT_ENV_PRESET, **data.get("env_presets", {})})
    recipe = {k: v for k, v in data.items() if k not in ("default_env", "env_presets")}
    apply_file(cfg, recipe, f"agents/{agent}.toml")
    cfg.presets.insert(0, f"agents/{agent}.toml")
    return cfg


def apply_env(cfg: RunConfig, env: str, family_presets: dict[str, str]) -> None:
    """`--env` takes an env preset name (envs/<name>.toml) or an env id, which gets its family's
    preset: the agent preset's `[env_presets]` choice (dqn-cleanrl: atari-cleanrl) or the default."""
    from rlsuite.envs import resolve_env_id

    path = preset_path("envs", env)
    if path is None:
        family, _ = resolve_env_id(env)  # raises UserError with close matches
        path = preset_path("envs", family_presets[family])
        if path is None:
            raise UserError(f"env preset '{family_presets[family]}' named by the agent preset does not exist")
    data = read_toml(path)
    apply_file(cfg, data, f"envs/{path.name}")
    if preset_path("envs", env) is None:
        cfg.env.id = env
    cfg.presets.append(f"envs/{path.name}")
