"""NetHack (NLE) game env: only the observation keys the agents use, our own seeding and metrics.

Observations: NLE's terminal (`tty_chars`, `tty_colors` 24x80, `tty_cursor` (row, col)), `blstats`
and `message`, which the NetHack encoder reads (rlsuite.nn.nethack), plus `prev_action` (1,): the
action that led to this observation, 0 after a reset (as the paper's agent feeds it back; note
that 0 is also a real action). Requesting just these (instead of NLE's fourteen default keys,
glyphs and inventory included) and bypassing gymnasium's per-step checkers keeps this layer fast.
Each reset draws fresh NetHack core/display seeds from a generator derived from `seed`
(`private_rng`), so a seeded run replays the same games while successive games still differ.
A death on the time-limit step is terminated (and truncated).
Metrics (valid at game over): `score` (in-game score), `depth` (deepest dungeon level reached),
`xp` (experience level), `turns` (game turns) — the larger of the last two status lines,
because NLE's observation after death can hold a cleared status line.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlsuite.envs.config import EnvConfig
from rlsuite.envs.vector import private_rng
from rlsuite.errors import require

NLE_KEYS = ("tty_chars", "tty_colors", "tty_cursor", "blstats", "message")
METRIC_KEYS = ("score", "depth", "xp", "turns")


class NetHackGame(gym.Env):
    """One NLE task with a reduced observation dict and a time limit in agent steps."""

    def __init__(self, cfg: EnvConfig, task: str, tty: bool = False) -> None:
        """`tty` is kept for callers of `render_text`; the terminal screen is always requested now,
        as the encoder reads it."""
        require("nle", "nethack")
        from nle import nethack

        spec = gym.spec(task)
        cls = gym.envs.registration.load_env_creator(spec.entry_point)
        # NLE's own step limit is pushed past ours, so truncation is always ours.
        self._env = cls(**spec.kwargs, observation_keys=NLE_KEYS, max_episode_steps=cfg.max_episode_steps + 1)
        self.action_space = self._env.action_space
        n_actions = int(self.action_space.n)
        # A (1,) Box rather than Discrete: every obs key is then an array the vector layer and the
        # replay buffer store like the others, and the encoder one-hots it.
        prev_space = gym.spaces.Box(0, n_actions - 1, (1,), np.int64)
        self.observation_space = gym.spaces.Dict(
            {**{k: self._env.observation_space[k] for k in NLE_KEYS}, "prev_action": prev_space}
        )
        self._prev_action = np.zeros(1, np.int64)  # updated in place, as NLE does its arrays
        self._cap = cfg.max_episode_steps
        self._idx = [nethack.NLE_BL_SCORE, nethack.NLE_BL_DEPTH, nethack.NLE_BL_XP, nethack.NLE_BL_TIME]
        self._depth_idx = nethack.NLE_BL_DEPTH
        self._last_bl = np.zeros(27, np.int64)  # status line of the previous step
        self._depth = 0
        # Reused every step; the metrics in it are only updated (and only meaningful) at a game end.
        self._info: dict[str, Any] = {"game_over": True, **dict.fromkeys(METRIC_KEYS, 0)}
        self._rng = np.random.default_rng()
        self._elapsed = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = private_rng(seed, "nethack_game_seeds")
        core, disp = (int(x) for x in self._rng.integers(1, 2**31, size=2))
        self._env.seed(core=core, disp=disp, reseed=False)
        obs, info = self._env.reset()
        self._elapsed = 0
        np.copyto(self._last_bl, obs["blstats"])
        self._depth = int(self._last_bl[self._depth_idx])
        self._prev_action[0] = 0
        obs["prev_action"] = self._prev_action
        return obs, info

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict[str, Any]]:
        obs, reward, term, _, _ = self._env.step(action)
        self._elapsed += 1
        self._prev_action[0] = action
        obs["prev_action"] = self._prev_action
        blstats = obs["blstats"]
        depth = int(blstats[self._depth_idx])
        if depth > self._depth:
            self._depth = depth
        truncated = self._elapsed >= self._cap
        if term or truncated:
            self._write_metrics(blstats)
        else:
            np.copyto(self._last_bl, blstats)  # NLE overwrites its arrays in place
        return obs, float(reward), bool(term), truncated, self._info

    def _write_metrics(self, blstats: np.ndarray) -> None:
        """Game-end metrics; the last status line before death counts, as NLE may clear it at death."""
        peak = np.maximum(self._last_bl[self._idx], blstats[self._idx])
        self._info.update(zip(METRIC_KEYS, peak.tolist()))
        self._info["depth"] = max(self._depth, self._info["depth"])

    def render_text(self) -> str:
        """The terminal screen after the last reset or step: 24 lines of 80 characters joined by
        newlines (NLE's tty_chars; non-printable bytes shown as spaces)."""
        # NLE's own render() reads last_observation the same way; it holds every requested key.
        chars = self._env.last_observation[self._env._observation_keys.index("tty_chars")]
        printable = np.where(chars >= 32, chars, 32).astype(np.uint8)
        return "\n".join(bytes(row).decode("latin-1") for row in printable)

    def close(self) -> None:
        self._env.close()
