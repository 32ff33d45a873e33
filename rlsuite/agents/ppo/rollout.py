"""PPO's rollout storage (Rollout): num_steps x num_envs of what its updates learn from, on the
agent's device, and the filled part a checkpoint keeps."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from rlsuite.agents.ppo.observations import alloc_obs, map_obs


class Rollout:
    """num_steps x num_envs of what PPO learns from, on the agent's device.

    Step t holds the observation acted on, whether it started an episode (`starts`, for the LSTM),
    the action, its log-probability and values at acting time, the reward (plus gamma V(final obs)
    where the step truncated), and whether the episode ended there (`ends`). With an LSTM,
    `initial_state` is the recurrent state before step 0 (before its start-reset).
    """

    FIELDS = ("actions", "logprobs", "values", "values_int", "rewards", "starts", "ends")

    def __init__(self, space: gym.Space, num_steps: int, num_envs: int, device: torch.device,
                 rnd_shape: tuple[int, ...] | None = None) -> None:
        lead = (num_steps, num_envs)
        self.num_steps, self.num_envs, self.pos = num_steps, num_envs, 0
        self.complete = False  # every row holds data (a rollout has been completed in this storage)
        self.obs = alloc_obs(space, lead, device)
        self.actions = torch.zeros(lead, dtype=torch.long, device=device)
        self.logprobs, self.values, self.values_int, self.rewards, self.starts, self.ends = (
            torch.zeros(lead, device=device) for _ in range(6))
        # RND: the part of each step's next observation its networks read (the last frame).
        self.rnd_frames = None if rnd_shape is None else torch.zeros((*lead, *rnd_shape), device=device)
        self.initial_state: torch.Tensor | None = None

    @property
    def full(self) -> bool:
        return self.pos == self.num_steps

    def state_dict(self) -> dict[str, Any]:
        """The filled part only (a checkpoint mid-rollout stays small)."""
        p = self.pos
        out = {k: getattr(self, k)[:p].clone() for k in self.FIELDS}
        out.update(pos=p, obs=map_obs(lambda v: v[:p].clone(), self.obs), initial_state=self.initial_state,
                   rnd_frames=None if self.rnd_frames is None else self.rnd_frames[:p].clone())
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        p = self.pos = state["pos"]
        self.complete = False  # rows past pos were not saved
        for k in self.FIELDS:
            getattr(self, k)[:p] = state[k]
        if isinstance(self.obs, dict):
            for k, v in self.obs.items():
                v[:p] = state["obs"][k]
        else:
            self.obs[:p] = state["obs"]
        if self.rnd_frames is not None and state["rnd_frames"] is not None:
            self.rnd_frames[:p] = state["rnd_frames"]
        self.initial_state = state["initial_state"]
