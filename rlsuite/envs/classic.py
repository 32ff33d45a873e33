"""Classic control game env: the registered gymnasium env plus our time limit.

The registered limit (CartPole-v1: 500 steps) still applies; `max_episode_steps` can only shorten it.
A pole that falls on the limit step is terminated (and truncated): the game really ended.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlsuite.envs.config import EnvConfig


# Observation entries that are velocities, per classic-control task (gymnasium's documented layouts):
# CartPole [x, x_dot, theta, theta_dot]; Acrobot [cos1, sin1, cos2, sin2, dtheta1, dtheta2];
# MountainCar [position, velocity]; Pendulum [cos, sin, theta_dot].
VELOCITY_ENTRIES = {"CartPole": (1, 3), "Acrobot": (4, 5), "MountainCar": (1,), "Pendulum": (2,)}


def kept_entries(env_id: str, size: int) -> np.ndarray:
    """Indices of the observation kept by `EnvConfig.hide_velocities` (UserError for a task without
    a known velocity layout)."""
    from rlsuite.errors import UserError

    name = env_id.split("/")[-1].split("-")[0].removesuffix("Continuous")
    if name not in VELOCITY_ENTRIES:
        raise UserError(f"env.hide_velocities: no velocity layout known for {env_id}; "
                        f"it works for {', '.join(VELOCITY_ENTRIES)}")
    return np.array([i for i in range(size) if i not in VELOCITY_ENTRIES[name]])


class ClassicGame(gym.Env):
    """A classic-control env with float32 observations and a time limit in agent steps."""

    def __init__(self, cfg: EnvConfig, env_id: str) -> None:
        # The passive checker costs time on every step and checks nothing we rely on.
        # rgb_array only draws when render() is called (unlike 'human'), so it costs nothing per step.
        self._env = gym.make(env_id, disable_env_checker=True, render_mode="rgb_array")
        space = self._env.observation_space
        self._keep = kept_entries(env_id, space.shape[0]) if cfg.hide_velocities else None
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        if self._keep is not None:
            low, high = low[self._keep], high[self._keep]
        self.observation_space = gym.spaces.Box(low, high, low.shape, np.float32)
        self.action_space = self._env.action_space
        self._cap, self._elapsed = cfg.max_episode_steps, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, info = self._env.reset(seed=seed)
        self._elapsed = 0
        return self._observe(obs), info

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return obs if self._keep is None else obs[self._keep]

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, term, trunc, _ = self._env.step(action)
        self._elapsed += 1
        truncated = bool(trunc) or self._elapsed >= self._cap
        return self._observe(obs), float(reward), bool(term), truncated, {"game_over": True}

    def render_rgb(self) -> np.ndarray:
        """gymnasium's own picture of the current state, uint8 (H, W, 3) (CartPole: 400x600).
        Needs pygame (the `video` extra)."""
        return self._env.render()

    def close(self) -> None:
        self._env.close()
