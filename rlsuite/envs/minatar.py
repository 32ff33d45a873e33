"""MinAtar game env: channels-first uint8 observations, minimal action set, sticky actions.

Task sequences ask for the full 6-action set and zero channels padded to a common count.

The minatar package returns (10, 10, C) booleans; agents get (C, 10, 10) uint8 like Atari frames.
Sticky actions use the package's own `sticky_action_prob` (MinAtar's default is 0.1).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlsuite.envs.config import EnvConfig
from rlsuite.errors import UserError, require

# One colour per state channel (MinAtar games have at most 10), all bright so none reads as the
# black background.
PALETTE = np.array([
    (255, 80, 80), (80, 200, 255), (255, 220, 60), (120, 255, 120), (255, 140, 255),
    (255, 160, 60), (160, 120, 255), (60, 255, 220), (255, 255, 255), (200, 200, 120),
], np.uint8)
RENDER_SCALE = 20  # pixels per MinAtar cell in rendered pictures


class MinAtarGame(gym.Env):
    """One MinAtar game with a time limit in agent steps."""

    def __init__(self, cfg: EnvConfig, game: str) -> None:
        minatar = require("minatar", "minatar")
        self._env = minatar.Environment(game, sticky_action_prob=cfg.sticky_action_prob)
        full = range(self._env.num_actions())
        self._actions = list(full if cfg.full_action_space else self._env.minimal_action_set())
        h, w, c = self._env.state_shape()
        if cfg.pad_channels and cfg.pad_channels < c:
            raise UserError(f"env.pad_channels={cfg.pad_channels} is less than {game}'s {c} channels")
        self._channels = max(c, cfg.pad_channels)
        self.observation_space = gym.spaces.Box(0, 1, (self._channels, h, w), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self._actions))
        self._cap, self._elapsed = cfg.max_episode_steps, 0

    def _obs(self) -> np.ndarray:
        state = self._env.state().transpose(2, 0, 1)
        obs = np.zeros((self._channels, *state.shape[1:]), dtype=np.uint8)
        obs[: state.shape[0]] = state  # padding channels stay zero
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._env.seed(seed)
        self._env.reset()
        self._elapsed = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward, terminal = self._env.act(self._actions[action])
        self._elapsed += 1
        truncated = self._elapsed >= self._cap  # may coincide with a real end: both flags are then set
        return self._obs(), float(reward), bool(terminal), truncated, {"game_over": True}

    def render_rgb(self) -> np.ndarray:
        """The state as a picture, uint8 (10*RENDER_SCALE, 10*RENDER_SCALE, 3): each cell takes the
        `PALETTE` colour of its set channel (the last one when several are set; black when none),
        upscaled nearest-neighbour so a 10x10 grid is watchable."""
        state = self._env.state()  # (10, 10, C) bool
        image = np.zeros((*state.shape[:2], 3), np.uint8)
        for c in range(state.shape[2]):
            image[state[..., c]] = PALETTE[c]
        return image.repeat(RENDER_SCALE, axis=0).repeat(RENDER_SCALE, axis=1)
