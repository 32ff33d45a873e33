"""Episodic memory (EM) for DQN fine-tuning: the teacher's transitions kept in a protected part of
replay that is never evicted, and mixed into every batch in a fixed proportion.

Wołczyk et al. (ICML 2024), on Meta-World, pre-load SAC's replay with 10k transitions of the pre-trained
policy on the pre-trained stages, and mini-batches draw from both. Here the protected part lives
beside the online ring buffer (rlsuite.replay), so no amount of wrap-around can overwrite it, and
each batch takes exactly round(fraction x B) rows from it (uniform, on the run's `retention`
stream) and the rest from the online buffer. Its transitions are n-step like the online ones:
the discounted sum of up to n rewards inside the episode, discount 0 if the episode terminated
within them, else gamma^k, and the observation to bootstrap from.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlsuite.replay.buffer import Batch
from rlsuite.retention.config import EMConfig


class EpisodicMemory:
    """Protected transitions (n-step, from a teacher's dataset) and the batch mixing."""

    name = "em"

    def __init__(self, cfg: EMConfig, agent_cfg: Any, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.n_step, self.gamma = int(agent_cfg.n_step), float(agent_cfg.gamma)
        self.data: dict[str, Any] | None = None

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data["action"])

    def fill(self, dataset: Any, device: torch.device) -> None:
        """Keep the first `em.transitions` steps of `dataset` (rlsuite.data.Dataset) as n-step transitions."""
        count = min(self.cfg.transitions, len(dataset))
        idx = np.arange(count)
        rewards, terminated = np.asarray(dataset.rewards), np.asarray(dataset.terminated)
        ends = np.asarray(dataset.episode_ends(np.arange(len(dataset))))
        reward, discount, last = np.zeros(count, np.float32), np.ones(count, np.float32), idx.copy()
        for i in idx:
            total, scale, j = 0.0, 1.0, i
            for k in range(self.n_step):
                j = i + k
                total += scale * float(rewards[j])
                scale *= self.gamma
                if ends[j] or j + 1 >= len(dataset):
                    break
            reward[i], last[i] = total, j
            discount[i] = 0.0 if terminated[j] else scale
        self.data = {"obs": _tensor(dataset.observations(idx), device), "action": torch.as_tensor(
            np.asarray(dataset.actions)[idx], dtype=torch.int64, device=device),
            "reward": torch.as_tensor(reward, device=device), "discount": torch.as_tensor(discount, device=device),
            "next_obs": _tensor(dataset.next_observations(last), device)}

    def mix(self, buffer: Any, batch_size: int, beta: float = 1.0) -> Batch:
        """A batch of round(em.fraction x batch_size) protected rows and the rest from `buffer`."""
        k = min(batch_size - 1, int(round(self.cfg.fraction * batch_size))) if len(self) else 0
        online = buffer.sample(batch_size - k, beta=beta)
        if k == 0:
            return online
        rows = torch.from_numpy(self.rng.integers(len(self), size=k)).to(self.data["action"].device)
        mem = {key: _take(value, rows) for key, value in self.data.items()}
        ones = torch.ones(k, device=online.weights.device, dtype=online.weights.dtype)
        return Batch(obs=_cat(online.obs, mem["obs"]), action=torch.cat([online.action, mem["action"]]),
                     reward=torch.cat([online.reward, mem["reward"]]), discount=torch.cat([online.discount, mem["discount"]]),
                     next_obs=_cat(online.next_obs, mem["next_obs"]), weights=torch.cat([online.weights, ones]),
                     indices=torch.cat([online.indices, torch.full((k,), -1, dtype=online.indices.dtype,
                                                                   device=online.indices.device)]))

    def state_dict(self) -> dict[str, Any]:
        return {"data": self.data, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data = state["data"]
        self.rng.bit_generator.state = state["rng"]


def _tensor(obs: Any, device: torch.device) -> Any:
    if isinstance(obs, dict):
        return {k: torch.as_tensor(np.asarray(v), device=device) for k, v in obs.items()}
    return torch.as_tensor(np.asarray(obs), device=device)


def _take(value: Any, rows: torch.Tensor) -> Any:
    return {k: v[rows] for k, v in value.items()} if isinstance(value, dict) else value[rows]


def _cat(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: torch.cat([a[k], b[k].to(a[k].dtype)]) for k in a}
    return torch.cat([a, b.to(a.dtype)])
