"""Checks of a run's datasets against its config and env, made before anything is written.

`check_offline_run(cfg)` (dt, bc; `rlsuite train` and `rlsuite finetune` call it before they create
the run directory) refuses in one line (UserError):

- datasets that cannot be opened, hold no steps, or differ in observation or action space;
- `--env` naming another env than the datasets' (an offline run plays the env its data came from);
- a global batch (agent.batch_size) that the torchrun processes cannot split evenly;
- a context (agent.model.context) longer than the longest episode of the data (windows never cross
  an episode, so the rest would be padding) or than the timestep table (agent.model.max_timestep).

It returns warnings: steps whose timestep is past the timestep table share its last row (training
is legitimate; the warning says how many and what to set).

`check_dataset_env(path, env_cfg, key)`: a dataset (finetune.data) must have the observation and
action spaces of the env it is used with.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rlsuite.errors import UserError, brief_space


def check_world(algo: str, batch_size: int | None, world: int) -> None:
    """torchrun: only offline agents are data-parallel, and their global batch splits evenly."""
    if world <= 1:
        return
    from rlsuite.loops.offline import is_offline

    if not is_offline(algo):
        raise UserError(f"torchrun trains offline agents (dt, bc) data-parallel; '{algo}' is an online agent, "
                        f"whose {world} processes would be independent copies writing one run: "
                        "start it with plain `rlsuite train`")
    if batch_size is not None and (batch_size < world or batch_size % world):
        fit = max(world, (batch_size // world) * world)
        raise UserError(f"agent.batch_size={batch_size} is the global batch, split over {world} processes: "
                        f"it must be a multiple of {world} (e.g. --set agent.batch_size={fit})")


def _dataset_env_id(manifest: dict[str, Any]) -> str | None:
    env = manifest.get("env")
    found = env.get("id") if isinstance(env, dict) else None
    found = found or manifest.get("env_id") or manifest.get("game")
    return str(found) if found else None


def _same_env(a: str, b: str) -> bool:
    from rlsuite.envs import resolve_env_id

    try:
        return resolve_env_id(a) == resolve_env_id(b)
    except UserError:
        return a.strip().lower() == b.strip().lower()


def check_env_flag(env: str, datasets: list[Any]) -> None:
    """`--env` with datasets: it may only name the env every dataset was collected on."""
    found = {str(ds.path): _dataset_env_id(ds.manifest) for ds in datasets}
    other = {path: e for path, e in found.items() if e is None or not _same_env(env, e)}
    if other:
        listing = ", ".join(f"{p}: {e or 'no env named'}" for p, e in other.items())
        raise UserError(f"--env {env}: an offline run plays the env its datasets were collected on, not {env} "
                        f"({listing}); leave --env out (the datasets choose the env)")


def check_spaces(datasets: list[Any]) -> None:
    """Every dataset holds steps, and all share one observation shape and dtype and one action space."""
    for ds in datasets:
        if len(ds) == 0:
            raise UserError(f"dataset {ds.path} holds no steps")
    kinds = {(ds.observation_space.shape, np.dtype(ds.observation_space.dtype).name, str(ds.action_space))
             for ds in datasets}
    if len(kinds) > 1:
        listing = "; ".join(f"{ds.path}: obs {brief_space(ds.observation_space)}, actions {ds.action_space}"
                            for ds in datasets)
        raise UserError(f"the datasets differ in observation or action space ({listing}); multi-game data must "
                        "share them (MinAtar: --set env.pad_channels=N --set env.full_action_space=true when "
                        "collecting)")


def longest_episode(datasets: list[Any]) -> int:
    return max((int(np.max(ds.episode_table["length"])) for ds in datasets if ds.num_episodes), default=0)


def check_sizes(cfg: Any, datasets: list[Any]) -> list[str]:
    """The model's context and timestep table against the data; returns warning lines."""
    from rlsuite.agents import agent_classes

    agent_cls, _ = agent_classes(cfg.algo)
    model = getattr(cfg.agent, "model", None)
    context = getattr(agent_cls, "context", None) or getattr(model, "context", None)
    table = getattr(model, "max_timestep", None)
    longest = longest_episode(datasets)
    if context is None or longest == 0:
        return []
    if context > longest:
        raise UserError(f"agent.model.context={context} is longer than the longest episode of the datasets "
                        f"({longest:,} steps); a window never crosses an episode: set agent.model.context "
                        f"to at most {longest:,}")
    if table is None:
        return []
    if context > table:
        raise UserError(f"agent.model.context={context} is longer than the timestep table "
                        f"(agent.model.max_timestep={table}); set agent.model.max_timestep={longest} "
                        "(the longest episode of the data)")
    past = sum(int(np.maximum(np.asarray(ds.episode_table["length"], np.int64) - table, 0).sum()) for ds in datasets)
    if past == 0:
        return []
    total = sum(len(ds) for ds in datasets)
    return [f"{past:,} of {total:,} steps of the datasets have timesteps past agent.model.max_timestep={table} "
            f"(longest episode {longest:,} steps) and share its last embedding; "
            f"--set agent.model.max_timestep={longest} gives each its own"]


def check_offline_run(cfg: Any, env_flag: str | None = None, world: int = 1) -> list[str]:
    """Every check above for an offline run (UserError on the first that fails); returns warnings.
    `env_flag`: the --env the user gave, if any."""
    from rlsuite.loops.offline_games import open_datasets

    check_world(cfg.algo, cfg.agent.batch_size, world)
    datasets = open_datasets(cfg)
    if cfg.offline.weights and len(cfg.offline.weights) != len(datasets):
        raise UserError(f"offline.weights has {len(cfg.offline.weights)} numbers for {len(datasets)} datasets")
    check_spaces(datasets)
    if env_flag:
        check_env_flag(env_flag, datasets)
    return check_sizes(cfg, datasets)


def check_dataset_env(path: str, env_cfg: Any, key: str) -> None:
    """The dataset at `path` (named by config key `key`) has the spaces of env `env_cfg`'s env."""
    from rlsuite.data import Dataset
    from rlsuite.envs import make as make_env

    ds = Dataset(path)
    probe = make_env(env_cfg, 1, 0)
    try:
        obs, act = probe.single_observation_space, probe.single_action_space
    finally:
        probe.close()
    shape = getattr(ds.observation_space, "shape", None)
    same_obs = (shape == getattr(obs, "shape", None) and shape is not None
                and np.dtype(ds.observation_space.dtype) == np.dtype(obs.dtype)) or str(ds.observation_space) == str(obs)
    if not same_obs or str(ds.action_space) != str(act):
        where = _dataset_env_id(ds.manifest)
        raise UserError(f"{key}: {path} was collected on {where or 'another env'} (observations "
                        f"{brief_space(ds.observation_space)}, actions {ds.action_space}), but {env_cfg.id} has "
                        f"observations {brief_space(obs)}, actions {act}; give data of {env_cfg.id}'s FAR starts "
                        f"or leave {key} empty (the run collects it)")
