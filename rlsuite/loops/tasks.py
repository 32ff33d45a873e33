"""Task sequences: one agent trained on several games in turn (continual RL).

`rlsuite train dqn-minatar --tasks minatar:breakout,minatar:asterix,minatar:freeway
--steps-per-task 500000 --cycles 2` plays the sequence twice. Phase k (0-based) trains task
``tasks[k % len(tasks)]`` during env steps ``[k N, (k+1) N)``.

- **One network for all tasks.** Every task's env is built with the full action set and, for
  MinAtar, its observation channels zero-padded to the largest count in the sequence (Atari
  frames already share one shape). Mixing families is refused.
- **At every switch** (and at the end) every task is evaluated, one `eval.jsonl` record each
  with ``task``, ``phase`` and ``source="switch"``; periodic evaluations during a phase cover the
  task being trained (``source="periodic"``). `rlsuite compare` turns these into the Continual
  World metrics (`rlsuite.analysis.continual`).
- **What a switch resets** is configurable (`train.reset_*`): by default the replay buffer (the
  old game's transitions would be trained on with the new game's targets) and the exploration
  schedule, so a revisited task is explored exactly as a fresh agent explores it; the optimizer's
  moments are kept unless `train.reset_optimizer` is set.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from rlsuite.run import seeding
from rlsuite.envs import make as make_env
from rlsuite.envs.config import ATARI, MINATAR, EnvConfig, resolve_env_id
from rlsuite.errors import UserError

FAMILIES = (MINATAR, ATARI)


def validate(cfg: Any) -> None:
    """Check a task-sequence config and set total_steps from it (no-op without tasks)."""
    t = cfg.train
    if not t.tasks:
        return
    families = {resolve_env_id(task)[0] for task in t.tasks}
    if len(families) != 1 or not families <= set(FAMILIES):
        raise UserError(f"train.tasks must all be MinAtar games or all Atari games, got {', '.join(t.tasks)}")
    if t.steps_per_task <= 0:
        raise UserError("train.tasks needs train.steps_per_task > 0 (--steps-per-task N)")
    if t.cycles < 1:
        raise UserError(f"train.cycles must be >= 1, got {t.cycles}")
    t.total_steps = len(t.tasks) * t.steps_per_task * t.cycles


@functools.lru_cache(maxsize=None)
def _channels(task: str) -> int:
    import minatar

    return int(minatar.Environment(resolve_env_id(task)[1]).state_shape()[2])


def env_config(cfg: Any, task: str) -> EnvConfig:
    """The env config of one task of the sequence: full action set, shared channel count."""
    family = resolve_env_id(task)[0]
    # env.pad_channels can only raise the count: fresh single-task reference runs set it to the
    # sequence's count so their network has exactly the sequence network's shape.
    pad = max([_channels(t) for t in cfg.train.tasks] + [cfg.env.pad_channels]) if family == MINATAR else 0
    return dataclasses.replace(cfg.env, id=task, full_action_space=True, pad_channels=pad)


def phase_of(cfg: Any, step: int) -> int:
    """The phase env step `step` belongs to (the last phase for step == total_steps)."""
    t = cfg.train
    return min(step // t.steps_per_task, len(t.tasks) * t.cycles - 1)


def task_of(cfg: Any, phase: int) -> str:
    return cfg.train.tasks[phase % len(cfg.train.tasks)]


def unique_tasks(cfg: Any) -> list[str]:
    return list(dict.fromkeys(cfg.train.tasks))


def task_index(cfg: Any, phase: int) -> int:
    """The index of a phase's task among the sequence's distinct tasks (names its eval streams)."""
    return unique_tasks(cfg).index(task_of(cfg, phase))


def make_task_envs(cfg: Any, phase: int) -> tuple[Any, Any]:
    """Training and evaluation envs for a phase's task."""
    t = cfg.train
    env_cfg = env_config(cfg, task_of(cfg, phase))
    train_seeds = seeding.env_seeds(t.seed, "train_env", phase, n=t.num_envs)
    eval_seeds = seeding.env_seeds(t.seed, "eval_env", 0, task_index(cfg, phase), n=t.eval_num_envs)
    return make_env(env_cfg, t.num_envs, train_seeds), make_env(env_cfg, t.eval_num_envs, eval_seeds, evaluation=True)
