"""The games an offline run is evaluated on, and their evaluation (rlsuite.loops.offline's periodic and
final evaluations, and `rlsuite eval` of an offline run).

Each dataset names its game and the env config it was collected with (its manifest); the run
resolves them once into `EvalGame`s and keeps them in every checkpoint, so evaluating a checkpoint
needs no dataset. A game is played on evaluation envs of that config, conditioned on a return
target: a number, `data-best` (the best complete episode of its datasets) or `expert` (MGDT).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlsuite import config

from rlsuite.run import checkpoint, seeding
from rlsuite.agents import agent_classes
from rlsuite.data.dataset import Dataset
from rlsuite.envs import EnvConfig
from rlsuite.envs import make as make_env
from rlsuite.errors import UserError
from rlsuite.run.evaluate import evaluate


@dataclass
class EvalGame:
    """One game an offline agent is evaluated on, resolved from its dataset at the start of a run
    (and kept in every checkpoint, so `rlsuite eval` needs no dataset)."""

    name: str
    """The game (e.g. 'breakout'), as the dataset's manifest names it."""
    env: dict[str, Any]
    """The EnvConfig (as a dict) of its evaluation envs."""
    best_return: float
    """Best return of a complete episode in the dataset (the 'data-best' target)."""
    clipped_rewards: bool
    """The dataset's rewards are clipped (DQN-Replay): evaluation lowers the return-to-go by sign(r)."""
    earlier: bool = False
    """A game of the parent run that this fine-tuning run does not train on: evaluated to measure
    forgetting (offline.eval_parent_games), reported beside the others and left out of their mean."""


def open_datasets(cfg: config.RunConfig) -> list[Dataset]:
    if not cfg.offline.datasets:
        raise UserError(f"agent '{cfg.algo}' learns from datasets: name them with --dataset DIR[,DIR...] "
                        "(rlsuite collect makes one)")
    return [Dataset(path) for path in cfg.offline.datasets]


def _env_config(cfg: config.RunConfig, manifest: dict[str, Any]) -> EnvConfig:
    """The dataset's own env config when its manifest has one (rlsuite collect), else the run's env
    section with the manifest's game (imported data: DQN-Replay is Atari with the full action set)."""
    env = dataclasses.replace(cfg.env)
    if isinstance(manifest.get("env"), dict):
        known = {f.name for f in dataclasses.fields(EnvConfig)}
        table = {k: v for k, v in manifest["env"].items() if k in known}
        env = EnvConfig()
        config.apply_table(env, table, "env.", "the dataset manifest")
    elif manifest.get("env_id") or manifest.get("game"):
        env.id = str(manifest.get("env_id") or manifest.get("game"))
        if manifest.get("source") == "dqn-replay":
            env.full_action_space = True
    return env


def resolve_games(cfg: config.RunConfig, datasets: list[Dataset]) -> list[EvalGame]:
    games = []
    for ds in datasets:
        env = _env_config(cfg, ds.manifest)
        stats = ds.stats()
        best = stats.get("return_max")
        reward_note = str(ds.manifest.get("reward", "")).lower()
        clipped = ds.manifest.get("source") == "dqn-replay" or "clip" in reward_note
        name = str(ds.manifest.get("game") or env.id)
        games.append(EvalGame(name, dataclasses.asdict(env), float(best) if best is not None else math.nan, clipped))
    if cfg.offline.eval_games:
        unknown = [g for g in cfg.offline.eval_games if g not in {x.name for x in games}]
        if unknown:
            raise UserError(f"offline.eval_games names {', '.join(unknown)}, not a game of the datasets "
                            f"({', '.join(g.name for g in games)})")
        games = [g for g in games if g.name in cfg.offline.eval_games]
    seen: dict[str, EvalGame] = {}
    for g in games:  # two datasets of one game (e.g. expert + noisy) evaluate once, with the best data return
        if g.name in seen:
            seen[g.name].best_return = float(np.nanmax([seen[g.name].best_return, g.best_return]))
        else:
            seen[g.name] = g
    return list(seen.values())


def parent_games(parent: str, trained: list[EvalGame]) -> list[EvalGame]:
    """The games of a fine-tuning run's parent checkpoint that are not among `trained`, marked
    `earlier` (the forgetting probe: DT-Mem's sequential claim, the project spec DTMEM_RETENTION.md
    §1.10 (c)). A parent without stored games (an online run) gives none."""
    data = checkpoint.load(checkpoint.find(parent))
    names = {g.name for g in trained}
    out = []
    for stored in data.get("games", []):
        game = EvalGame(**{**stored, "earlier": True})
        if game.name not in names:
            out.append(game)
    return out


def target_for(agent_cfg: Any, game: EvalGame, override: str | None = None) -> float | str:
    """The return an evaluation of `game` conditions on: a number, or 'expert'."""
    target = override or agent_cfg.eval_target
    if target == "data-best":
        if math.isnan(game.best_return):
            raise UserError(f"target 'data-best': the dataset of {game.name} has no complete episode; give a number")
        return game.best_return
    return target if target == "expert" else float(target)


def clip_rule(agent_cfg: Any, game: EvalGame) -> bool:
    return agent_cfg.eval_reward == "clip" or (agent_cfg.eval_reward == "auto" and game.clipped_rewards)


def evaluate_game(agent: Any, agent_cfg: Any, game: EvalGame, episodes: int, num_envs: int, seed: Any,
                  rng: np.random.Generator, epsilon: float, target: str | None = None) -> tuple[dict[str, Any], Any]:
    """Play `episodes` whole games of `game`; returns (summary with per-episode lists, target used)."""
    env_cfg = EnvConfig()
    config.apply_table(env_cfg, game.env, "env.", "the run's evaluation games")
    env = make_env(env_cfg, num_envs, seed, evaluation=True)
    try:
        if env.single_observation_space.shape != agent.observation_space.shape:
            raise UserError(f"{game.name}'s evaluation env gives observations {env.single_observation_space.shape}, "
                            f"the model takes {agent.observation_space.shape}")
        value = None  # behaviour cloning: nothing to condition on
        if getattr(agent, "return_conditioned", True):
            value = target_for(agent_cfg, game, target)
            agent.set_eval_game(value, clip_rule(agent_cfg, game))
        result = evaluate(agent, env, episodes, epsilon, seed=seed, rng=rng)
    finally:
        env.close()
    return {**result.summary(), **result.per_episode(), "game": game.name}, value



EVAL_KEYS = ("agent.eval_sample", "agent.eval_epsilon", "agent.eval_reward", "agent.expert_kappa",
             "agent.expert_samples", "agent.return_temperature", "agent.eval_temperature")
"""The keys `rlsuite eval --set` may change on an offline run: how it acts, never what it learned."""


def evaluate_checkpoint(target: str | Path, episodes: int, num_envs: int, seed: int, epsilon: float | None = None,
                        return_target: str | None = None, game: str | None = None,
                        sample: bool = False, overrides: tuple[str, ...] = ()) -> tuple[Any, list[dict[str, Any]]]:
    """`rlsuite eval` of an offline run: every game of the run (or `game`), conditioned on the
    agent's eval_target or `return_target` (a number, data-best, expert). `overrides` are `--set`
    assignments of the agent's evaluation keys (EVAL_KEYS), checked as a run's are. Returns (the
    checkpoint's data, one summary per game); nothing is trained or written here."""
    import re

    from rlsuite.agents.dt.config import TARGET_PATTERN

    path = checkpoint.find(target)
    data = checkpoint.load(path)
    cfg = config.empty_run_config(str(data.get("algo", "")))
    config.apply_file(cfg, {k: v for k, v in data["config"].items() if k in config.SECTIONS}, str(path))
    for assignment in overrides:
        key = assignment.split("=", 1)[0].strip()
        if key not in EVAL_KEYS:
            raise UserError(f"--set {key}: an offline run's evaluation takes only {', '.join(EVAL_KEYS)} "
                            "(the model's own keys are fixed by its training)")
        config.apply_override(cfg, assignment)
    if sample:  # before the checks: --sample is what makes agent.eval_temperature=adaptive meaningful
        cfg.agent.eval_sample = True
    config.validate(cfg)
    agent_cls, _ = agent_classes(cfg.algo)
    if return_target is not None and not getattr(agent_cls, "return_conditioned", True):
        raise UserError(f"--target applies to return-conditioned agents (dt); {path} holds a {cfg.algo} agent")
    if return_target is not None and not re.fullmatch(TARGET_PATTERN, return_target):
        raise UserError(f"--target must be a number, data-best or expert, got {return_target!r}")
    games = [EvalGame(**g) for g in data.get("games", [])]
    if game is not None:
        chosen = [g for g in games if g.name == game]
        if not chosen:
            raise UserError(f"{path} was trained on {', '.join(g.name for g in games)}; no game {game!r}")
        games = chosen
    eps = cfg.agent.eval_epsilon if epsilon is None else epsilon
    results = []
    for index, g in enumerate(games):
        env_cfg = EnvConfig()
        config.apply_table(env_cfg, g.env, "env.", str(path))
        probe = make_env(env_cfg, 1, seed, evaluation=True)
        obs_space, act_space = probe.single_observation_space, probe.single_action_space
        probe.close()
        if return_target == "expert" and cfg.agent.model.returns != "bins":
            raise UserError("--target expert needs a model trained with agent.model.returns=bins")
        agent = agent_cls(cfg.agent, obs_space, act_space, "cpu", seed=cfg.train.seed)
        agent.load_state_dict(data["agent"])
        rng = seeding.generator(seed, "eval_exploration", index)
        summary, value = evaluate_game(agent, cfg.agent, g, episodes, num_envs, seed, rng, eps, return_target)
        results.append({**summary, "target": value})
    return data, results
