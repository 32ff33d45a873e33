"""`collect`: play a policy on a vector env and store its experience as a dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np


from rlsuite.data.dataset import Dataset
from rlsuite.data.format import DEFAULT_CHUNK_SIZE
from rlsuite.data.writer import DatasetWriter


def collect(agent: Any, env: Any, out: str | Path, *, steps: int | None = None, episodes: int | None = None,
            epsilon: float = 0.0, rng: np.random.Generator | None = None, seed: int | Iterable[int] = 0,
            manifest: dict[str, Any] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Dataset:
    """Play `agent.act(obs, epsilon, rng)` on the vector env `env` and store every step in a new
    dataset at `out`; returns it opened.

    Exactly one of `steps` (transitions to store) or `episodes` (whole episodes to store). Both are
    split over the envs in advance as rlsuite.run.evaluate.episode_quotas does (env i records its
    first quota[i] steps or episodes, then nothing more), so neither fast-finishing envs nor short
    games are over-sampled. With `episodes` every stored episode is complete; with `steps` the
    episode each env is in when its budget runs out is kept, marked complete=False.

    A recurrent agent's evaluation state is driven as rlsuite.run.evaluate.evaluate does (`eval_reset`,
    `eval_episode_starts`). `seed` seeds the env reset; `rng` is the exploration stream (None: the
    agent's own). The manifest gets `manifest` plus epsilon, num_envs, the stopping rule and the
    format's statistics.
    """
    import torch

    from rlsuite.run.evaluate import episode_quotas

    if (steps is None) == (episodes is None):
        raise ValueError("give exactly one of steps or episodes")
    budget = int(steps if steps is not None else episodes)  # type: ignore[arg-type]
    if budget < 1:
        raise ValueError(f"{'steps' if steps is not None else 'episodes'} must be >= 1, got {budget}")
    n = env.num_envs
    meta = {**(manifest or {}), "epsilon": float(epsilon), "num_envs": int(n), "env_seed": seed,
            "stop": {"steps": steps} if steps is not None else {"episodes": episodes}}
    writer = DatasetWriter(out, env.single_observation_space, env.single_action_space, meta, chunk_size)
    quota = episode_quotas(budget, n)
    counts = np.zeros(n, np.int64)
    active = quota > 0
    obs, _ = env.reset(seed=seed)
    reset, starts = getattr(agent, "eval_reset", None), getattr(agent, "eval_episode_starts", None)
    if reset is not None:
        reset(n)
    with torch.no_grad():
        while active.any():
            actions = agent.act(obs, epsilon) if rng is None else agent.act(obs, epsilon, rng=rng)
            actions = np.asarray(actions)
            next_obs, rewards, terminated, truncated, info = env.step(actions)
            ended = np.logical_or(terminated, truncated)
            writer.add(obs, actions, rewards, terminated, truncated, info.get("final_obs") if ended.any() else None,
                       episode_info=info.get("episode"), mask=active)
            if starts is not None:
                starts(ended)
            counts += (ended if episodes is not None else np.ones(n, bool)) & active
            for i in np.flatnonzero(active & (counts >= quota)):
                writer.cut(int(i), next_obs)  # a step budget ran out mid-episode (no-op after a whole episode)
                active[i] = False
            obs = next_obs
    writer.close()
    return Dataset(out)
