"""The vectorized env base: frame stacking, reward clipping, episode statistics.

Autoreset — one meaning for every backend: **same-step autoreset**. When env i's episode ends at a
step (terminated or truncated), the `obs[i]` returned by that step is already the first observation
of its next episode, and `info["final_obs"][i]` holds the true last observation of the ended
episode (same layout as obs; a dict of arrays for NetHack). Rows of `final_obs` for envs that did
not end are unspecified; `info["_final_obs"]` marks the rows that are valid.

End flags: `terminated` means the game really ended at this step (with life-loss termination, also
a lost life), so the step's value has no future and replay stores discount 0; `truncated` means the
time limit was reached at this step. Both are true when the game ends on the time-limit step: the
limit must never hide a real end (DQN would bootstrap from a terminal state).

Seeding: `make(cfg, n, seed)` and `reset(seed=...)` take an int root or a sequence of n per-env
ints, expanded by `rlsuite.run.seeding.vector_seeds` (env i gets the i-th value, or the i-th
SeedSequence child of an int root, never seed + i, so runs with neighbouring seeds share no env).
Randomness an env draws itself (reset no-ops, NetHack game seeds) comes from `private_rng`, a
keyed child of its seed, so it is never the `default_rng(seed)` stream an agent might also use.

Frame stacking (Atari) is done here for every backend: at an episode start the stack is zeros
except the newest frame, exactly what the replay buffer rebuilds from single frames.

Episode statistics, `info["episode"]`: arrays of length num_envs — `done` (a whole *game* ended;
with life-loss termination an episode ends at each lost life but a game only at game over),
`return` (raw, unclipped game score, float64), `length` (agent steps of the whole game), plus
family metrics (Montezuma `rooms`; NetHack `score`, `depth`, `xp`, `turns`). Values are meaningful
only where `done`.

Returned arrays are preallocated and double-buffered: they stay valid until the step after next
(so `obs = next_obs` loops are safe); copy anything kept longer.

Split-phase stepping: `send(actions)` starts a vector step and `recv()` finishes it, returning
exactly what `step` returns (`step(a)` is `send(a); recv()`), so a caller can work (learn) while
the envs step. Every env steps at every vector step, so everything above keeps its meaning. Only
one step may be in flight: `recv` without a pending `send`, or a second `send`, is a RuntimeError;
`reset` with a step in flight finishes that step and discards it. `asynchronous` is True when the
backend really overlaps (envpool or gymnasium-async with `env.async_step`); otherwise `send` only
stores the actions and `recv` does the whole step.

Backends subclass `VecEnv` and implement `_raw_reset` / `_raw_step`, returning a `RawStep`; a
backend that can overlap also overrides `_raw_send` / `_raw_recv` (whose defaults call `_raw_step`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rlsuite.run.seeding import vector_seeds

Obs = Any  # np.ndarray, or dict[str, np.ndarray] for NetHack


@dataclass
class RawStep:
    """What a backend produces per vector step (before stacking and clipping)."""

    frames: Obs  # newest single frame/obs per env, after same-step autoreset
    final_frames: Obs  # rows where ended: last frame of the ended episode
    reward: np.ndarray  # raw float reward
    terminated: np.ndarray  # the game (or, with life-loss termination, the life) ended, cap or not
    truncated: np.ndarray  # the time limit was reached (may be true together with terminated)
    game_over: np.ndarray  # a whole game ended (implies terminated or truncated)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # valid where game_over


def private_rng(seed: int, purpose: str) -> np.random.Generator:
    """A generator for randomness an env draws itself, keyed by `purpose`: a child of
    SeedSequence(seed), so never the `default_rng(seed)` stream (which is SeedSequence(seed) itself)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(purpose.encode()),)))


def alloc(space: gym.Space, n: int) -> Obs:
    """Zeroed buffers for `n` observations of `space` (one array per key of a dict space)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: np.zeros((n, *s.shape), s.dtype) for k, s in space.spaces.items()}
    return np.zeros((n, *space.shape), space.dtype)


def copy_obs(dst: Obs, src: Obs, rows: np.ndarray | None = None) -> None:
    """dst[rows] = src[rows] (all rows when None), for arrays or dicts of arrays."""
    if isinstance(dst, dict):
        for k in dst:
            copy_obs(dst[k], src[k], rows)
    elif rows is None:
        np.copyto(dst, src)
    else:
        dst[rows] = src[rows]


class _Out:
    """One set of output arrays (two of them alternate)."""

    def __init__(self, space: gym.Space, n: int, metric_keys: list[str]) -> None:
        self.obs = alloc(space, n)
        self.final_obs = alloc(space, n)
        self.reward = np.zeros(n, np.float32)
        self.terminated = np.zeros(n, bool)
        self.truncated = np.zeros(n, bool)
        self.ended = np.zeros(n, bool)
        self.episode: dict[str, np.ndarray] = {
            "done": np.zeros(n, bool), "return": np.zeros(n, np.float64), "length": np.zeros(n, np.int64),
        }
        for k in metric_keys:
            self.episode[k] = np.zeros(n, np.int64)


class VecEnv:
    """Base vector env (gymnasium VectorEnv-compatible attributes); see the module docstring."""

    metadata: dict[str, Any] = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(
        self, *, num_envs: int, frame_space: gym.Space, action_space: gym.spaces.Discrete, family: str,
        game: str, frame_stack: int = 0, clip_rewards: bool = False, metric_keys: tuple[str, ...] = (),
        asynchronous: bool = False,
    ) -> None:
        """frame_stack=0: observations are the backend's frames; k >= 1: a stack axis of k frames.
        asynchronous: the backend's `_raw_send` returns while the envs step (see `send`)."""
        self.num_envs, self.family, self.game = num_envs, family, game
        self.asynchronous = asynchronous
        """True when `send` returns while the envs step (work done before `recv` overlaps them)."""
        self._in_flight = False  # a send is waiting for its recv
        self._sent = np.zeros(num_envs, np.int64)  # the default `_raw_send` keeps the actions here
        self._stacked = frame_stack >= 1
        self.frame_stack = max(1, frame_stack)
        self.clip_rewards = clip_rewards
        self.metric_keys = list(metric_keys)
        if self._stacked:
            assert isinstance(frame_space, gym.spaces.Box)
            frame_space = gym.spaces.Box(0, 255, (frame_stack, *frame_space.shape), np.uint8)
        self.single_observation_space = frame_space
        self.single_action_space = action_space
        self.observation_space = gym.vector.utils.batch_space(frame_space, num_envs)
        self.action_space = gym.spaces.MultiDiscrete(np.full(num_envs, action_space.n))
        self._outs = [_Out(frame_space, num_envs, self.metric_keys) for _ in range(2)]
        self._cur = 0
        self._ep_return = np.zeros(num_envs, np.float64)
        self._ep_length = np.zeros(num_envs, np.int64)

    # -- backend hooks -------------------------------------------------------------------
    def _raw_reset(self, seeds: list[int] | None) -> Obs:
        """Reset every env, env i seeded with seeds[i] (None: continue each env's RNG)."""
        raise NotImplementedError

    def _raw_step(self, actions: np.ndarray) -> RawStep:
        """Step every env with actions[i] ((num_envs,) ints), same-step autoreset applied."""
        raise NotImplementedError

    def _raw_send(self, actions: np.ndarray) -> None:
        """Start a step with `actions` (num_envs,). Default: keep a copy for `_raw_recv`."""
        np.copyto(self._sent, actions, casting="unsafe")

    def _raw_recv(self) -> RawStep:
        """Finish the step `_raw_send` started. Default: the whole synchronous `_raw_step`."""
        return self._raw_step(self._sent)

    def close(self) -> None:
        pass

    # -- public API ----------------------------------------------------------------------
    def reset(self, seed: int | Sequence[int] | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        """Reset every env; `seed`: an int root or one int per env (see `rlsuite.run.seeding.vector_seeds`).
        A step still in flight (`send` without `recv`) is finished first and its results discarded."""
        if self._in_flight:
            self._in_flight = False
            self._raw_recv()
        frames = self._raw_reset(None if seed is None else vector_seeds(seed, self.num_envs))
        self._cur ^= 1
        out = self._outs[self._cur]
        if self._stacked:
            out.obs.fill(0)
            np.copyto(out.obs[:, -1], frames)
        else:
            copy_obs(out.obs, frames)
        self._ep_return.fill(0)
        self._ep_length.fill(0)
        return out.obs, {}

    def step(self, actions: np.ndarray) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every env: `actions` (num_envs,) ints -> (obs, reward (num_envs,) float32,
        terminated (num_envs,) bool, truncated (num_envs,) bool, info with `final_obs`, `_final_obs`
        and `episode`); see the module docstring. The same as `send(actions)` then `recv()`."""
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        """Start a vector step with `actions` ((num_envs,) ints; copied, so the caller may reuse the
        array). With `asynchronous` the envs step while the caller goes on; `recv` returns the step.
        Raises RuntimeError if a step is already in flight."""
        if self._in_flight:
            raise RuntimeError(f"{type(self).__name__}.send called while a step is in flight: "
                               "call recv() to finish it before sending the next actions")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"send/step takes one action per env, shape ({self.num_envs},); got {actions.shape}")
        self._raw_send(actions)
        self._in_flight = True

    def recv(self) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Finish the step `send` started (waiting for the envs) and return exactly what `step`
        returns. Raises RuntimeError if no step is in flight."""
        if not self._in_flight:
            raise RuntimeError(f"{type(self).__name__}.recv called with no step in flight: "
                               "call send(actions) first (each send is received once)")
        self._in_flight = False
        return self._emit(self._raw_recv())

    def _emit(self, raw: RawStep) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Turn a backend step into the next output buffers (stacking, clipping, statistics)."""
        prev = self._outs[self._cur]
        self._cur ^= 1
        out = self._outs[self._cur]
        np.logical_or(raw.terminated, raw.truncated, out=out.ended)
        self._write_obs(out, prev, raw)
        np.copyto(out.terminated, raw.terminated)
        np.copyto(out.truncated, raw.truncated)
        if self.clip_rewards:
            np.sign(raw.reward, out=out.reward, casting="unsafe")
        else:
            np.copyto(out.reward, raw.reward, casting="unsafe")
        self._record_episode(out, raw)
        info = {"final_obs": out.final_obs, "_final_obs": out.ended, "episode": out.episode}
        return out.obs, out.reward, out.terminated, out.truncated, info

    def _write_obs(self, out: _Out, prev: _Out, raw: RawStep) -> None:
        ended_rows = np.flatnonzero(out.ended) if out.ended.any() else None
        if self._stacked:
            # Shift the stack by one frame; ended envs start a fresh stack (zeros + newest frame).
            np.copyto(out.obs[:, :-1], prev.obs[:, 1:])
            np.copyto(out.obs[:, -1], raw.frames)
            if ended_rows is not None:
                out.final_obs[ended_rows, :-1] = prev.obs[ended_rows, 1:]
                out.final_obs[ended_rows, -1] = raw.final_frames[ended_rows]
                out.obs[ended_rows, :-1] = 0
        else:
            copy_obs(out.obs, raw.frames)
            if ended_rows is not None:
                copy_obs(out.final_obs, raw.final_frames, ended_rows)

    def _record_episode(self, out: _Out, raw: RawStep) -> None:
        self._ep_return += raw.reward
        self._ep_length += 1
        ep = out.episode
        np.copyto(ep["done"], raw.game_over)
        np.copyto(ep["return"], self._ep_return)
        np.copyto(ep["length"], self._ep_length)
        if raw.game_over.any():
            for k in self.metric_keys:
                np.copyto(ep[k], raw.metrics[k])
            self._ep_return[raw.game_over] = 0.0
            self._ep_length[raw.game_over] = 0

    def _loop_state(self) -> dict[str, Any]:
        """What the base class carries between steps (stacks, running game return/length)."""
        return {"outs": self._outs, "cur": self._cur, "ep_return": self._ep_return, "ep_length": self._ep_length}

    def _set_loop_state(self, state: dict[str, Any]) -> None:
        self._outs, self._cur = state["outs"], state["cur"]
        self._ep_return, self._ep_length = state["ep_return"], state["ep_length"]

    def __enter__(self) -> "VecEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.game!r}, num_envs={self.num_envs})"
