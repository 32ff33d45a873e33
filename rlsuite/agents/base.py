"""What the online loop (rlsuite.loops.online) asks of an agent, and the context it gives it.

The loop acts, steps the envs, logs, evaluates, checkpoints, handles signals and task
sequences. What an agent stores (DQN: a replay buffer; PPO: a rollout) and when it learns is the
agent's own, so the loop has no per-agent branch. One vector step of training is

    actions = agent.step(obs, env_step, exploration_step)
    next_obs, reward, terminated, truncated, info = env.step(actions)
    metrics = agent.observe(Transition(obs, actions, reward, terminated, truncated, info.get("final_obs"), next_obs),
                            env_step + num_envs)

and evaluation calls `agent.act(obs, epsilon, rng=...)` (a recurrent agent also gets
`eval_reset(num_envs)` before the first step and `eval_episode_starts(done)` after each; a
return-conditioned one also `eval_rewards(reward)` after each, before `eval_episode_starts`).
Offline agents (`offline = True`, the Decision Transformer) are driven by rlsuite.loops.offline instead:
`plan(total_updates)`, `update(batch)`, and the same evaluation calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium import spaces


@dataclass
class Transition:
    """One vector step, as the env layer returned it (num_envs rows each)."""

    obs: Any
    """Observations the actions were taken in: array (num_envs, ...) or dict of arrays."""
    actions: np.ndarray
    """(num_envs,) int64."""
    reward: np.ndarray
    """(num_envs,) float; clipped when the env config clips training rewards."""
    terminated: np.ndarray
    """(num_envs,) bool: the game (or a life, with life-loss episodes) really ended: no bootstrap."""
    truncated: np.ndarray
    """(num_envs,) bool: cut by a time limit: bootstrap from final_obs."""
    final_obs: Any
    """The true last observation of every env whose episode ended this step (rows of other envs are
    unspecified), or None when no episode ended; `next_obs` holds the reset observation instead."""
    next_obs: Any
    """Observations after the step (the first of a new episode where one ended)."""


@dataclass
class StorageContext:
    """What an agent needs to build the storage of one phase of a run (a task-sequence run has one
    phase per task; a single-task run one phase): sizes, spaces and the run's config."""

    cfg: Any
    """The whole RunConfig (e.g. its replay section, train.seed, train.total_steps)."""
    num_envs: int
    observation_space: spaces.Space
    """One env's observation space (`env.single_observation_space`)."""
    frame_stack: int
    """The env's frame stack (`env.frame_stack`; 1 where frames are not stacked)."""
    phase: int
    """Index of the phase: seeds its storage's random stream (rlsuite.run.seeding) so phases differ."""


class OnlineAgent(Protocol):
    """The methods rlsuite.loops.online calls. Optional ones are looked up with getattr."""

    device: torch.device

    def plan(self, total_env_steps: int) -> None:
        """Attach what depends on the run length (GMP window, learning-rate annealing)."""

    def begin(self, ctx: StorageContext) -> None:
        """Build fresh storage for a phase (at the start, and at a task switch that resets it)."""

    def step(self, obs: Any, env_step: int, exploration_step: int) -> np.ndarray:
        """Training actions (num_envs,) for `obs`; `exploration_step` is the step an exploration
        schedule sees (restarted per task when train.reset_exploration is set)."""

    def observe(self, t: Transition, env_step: int) -> dict[str, Any] | None:
        """Store the vector step and do the updates now owed; the metrics of the last update
        (TensorBoard tag -> number or 0-d tensor), or None when no update ran. `env_step` counts
        the env steps including this vector step."""

    def scalars(self, env_step: int) -> dict[str, float]:
        """Values logged with the update metrics (e.g. charts/epsilon)."""

    def status(self, env_step: int) -> str:
        """A short text for the progress bar and status line (e.g. 'eps 0.050'); may be ''."""

    def act(self, obs: Any, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Evaluation actions: the agent's greedy (or configured) choice, random with prob. epsilon."""

    def diagnostics(self, env_step: int) -> dict[str, float]:
        """Plasticity and sparsity scalars, on states the agent draws from its own storage on the
        run's `diagnostics` stream (never a training stream)."""

    def parameter_count(self) -> int: ...

    def state_dict(self) -> dict[str, Any]:
        """Everything but bulky storage: weights, optimizer, counters, RNG streams, hook states,
        and small storage (a rollout in progress, recurrent states, normalisers)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def save_storage(self, directory: Any) -> bool:
        """Write bulky storage (a replay buffer) for exact resume; False when there is none."""

    def load_storage(self, directory: Any) -> bool:
        """Read what save_storage wrote; False when nothing usable is there."""

    def reset_optimizer(self) -> None: ...
