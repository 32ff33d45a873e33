"""Gymnasium backends: vectorize single-game envs in-process (sync) or in subprocesses (async).

A *game env* is a `gymnasium.Env` that reports, in the info of every step, `game_over` (bool: the
whole game ended, not just a life) and the family's metrics (e.g. `rooms`); the game envs live in
atari.py, nethack.py, minatar.py and classic.py. Both backends implement the same-step autoreset
described in vector.py: the sync one in its loop, the async one inside each worker
(`SelfResetting`), so gymnasium's own autoreset never fires. With `asynchronous` (set from
`EnvConfig.async_step`) the async one splits a step into AsyncVectorEnv's `step_async` (`send`: the
workers step while the caller goes on) and `step_wait` (`recv`); `step` is those two in a row, so
results are identical either way.
"""
from __future__ import annotations

import pickle
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from rlsuite.envs.vector import Obs, RawStep, VecEnv, alloc

GameFactory = Callable[[], gym.Env]


def _set_row(dst: Obs, i: int, src: Obs) -> None:
    if isinstance(dst, dict):
        for k in dst:
            dst[k][i] = src[k]
    else:
        dst[i] = src


class _GameVec(VecEnv):
    """Shared setup: spaces from a probe env, preallocated raw-step arrays."""

    def __init__(self, probe: gym.Env, num_envs: int, seeds: list[int], **kw: Any) -> None:
        super().__init__(num_envs=num_envs, frame_space=probe.observation_space,
                         action_space=probe.action_space, **kw)
        self._seeds: list[int] | None = seeds
        frame_space = probe.observation_space
        n = num_envs
        self._raw = RawStep(
            frames=alloc(frame_space, n), final_frames=alloc(frame_space, n),
            reward=np.zeros(n, np.float64), terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
            game_over=np.zeros(n, bool), metrics={k: np.zeros(n, np.int64) for k in self.metric_keys},
        )

    def _seeds_for(self, seeds: list[int] | None) -> list[int] | None:
        # make(..., seed) seeds the first reset; a later reset() without seed continues the RNG.
        if seeds is None and self._seeds is not None:
            seeds, self._seeds = self._seeds, None
        return seeds


class SyncGameVec(_GameVec):
    """In-process loop over game envs, writing straight into preallocated arrays."""

    def __init__(self, factory: GameFactory, num_envs: int, seeds: list[int], **kw: Any) -> None:
        self.envs = [factory() for _ in range(num_envs)]
        super().__init__(self.envs[0], num_envs, seeds, **kw)

    def _raw_reset(self, seeds: list[int] | None) -> Obs:
        seeds = self._seeds_for(seeds)
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seeds is None else seeds[i])
            _set_row(self._raw.frames, i, obs)
        return self._raw.frames

    def _raw_step(self, actions: np.ndarray) -> RawStep:
        raw = self._raw
        for i, (env, action) in enumerate(zip(self.envs, actions.tolist())):
            obs, reward, term, trunc, info = env.step(action)
            raw.reward[i], raw.terminated[i], raw.truncated[i] = reward, term, trunc
            over = False
            if term or trunc:
                over = trunc or info["game_over"]
                _set_row(raw.final_frames, i, obs)
                for k in self.metric_keys:
                    raw.metrics[k][i] = info[k]
                obs, _ = env.reset()
            raw.game_over[i] = over
            _set_row(raw.frames, i, obs)
        return raw

    def state_dict(self) -> bytes | None:
        """Everything needed to continue bit-identically (for exact resume), or None when a game
        cannot be pickled (ALE and NLE hold native emulator state). Not with a step in flight."""
        if self._in_flight:
            raise RuntimeError("SyncGameVec.state_dict called between send and recv: call recv() first")
        try:
            return pickle.dumps({"envs": self.envs, "seed": self._seeds, "loop": self._loop_state()})
        except (TypeError, pickle.PicklingError, AttributeError):
            return None

    def load_state_dict(self, state: bytes) -> None:
        data = pickle.loads(state)
        self.close()
        self.envs, self._seeds = data["envs"], data["seed"]
        self._set_loop_state(data["loop"])

    def close(self) -> None:
        for env in self.envs:
            env.close()


class SelfResetting(gym.Wrapper):
    """Worker-side same-step autoreset: flags and the last obs travel in info; gymnasium sees no end."""

    def __init__(self, env: gym.Env, metric_keys: list[str]) -> None:
        super().__init__(env)
        self._metric_keys = metric_keys

    def step(self, action: Any) -> tuple[Obs, float, bool, bool, dict]:
        obs, reward, term, trunc, info = self.env.step(action)
        out = {"term": bool(term), "trunc": bool(trunc), "over": bool(trunc or (term and info["game_over"]))}
        out.update({k: int(info[k]) for k in self._metric_keys})
        out["last_obs"] = obs  # present on every step, so gymnasium stacks it into plain arrays
        if term or trunc:
            # NLE overwrites its observation arrays in place on reset: keep a copy.
            out["last_obs"] = {k: v.copy() for k, v in obs.items()} if isinstance(obs, dict) else obs.copy()
            obs, _ = self.env.reset()
        return obs, float(reward), False, False, out


class AsyncGameVec(_GameVec):
    """One subprocess per env via gymnasium.vector.AsyncVectorEnv; pass `asynchronous=True` for a
    split-phase `send` / `recv` (step_async / step_wait)."""

    def __init__(self, factory: GameFactory, num_envs: int, seeds: list[int], **kw: Any) -> None:
        probe = factory()
        keys = list(kw.get("metric_keys", ()))
        super().__init__(probe, num_envs, seeds, **kw)
        probe.close()
        self._vec = gym.vector.AsyncVectorEnv([lambda: SelfResetting(factory(), keys) for _ in range(num_envs)])

    def _raw_reset(self, seeds: list[int] | None) -> Obs:
        obs, _ = self._vec.reset(seed=self._seeds_for(seeds))
        return obs

    def _raw_step(self, actions: np.ndarray) -> RawStep:
        """One synchronous vector step (AsyncVectorEnv.step is step_async + step_wait)."""
        return self._fill(*self._vec.step(actions.astype(np.int64)))

    def _raw_send(self, actions: np.ndarray) -> None:
        """Async: send each worker its action (pickled at once, so the array may be reused)."""
        if not self.asynchronous:
            return super()._raw_send(actions)
        self._vec.step_async(actions.astype(np.int64))

    def _raw_recv(self) -> RawStep:
        """Async: wait for every worker's step."""
        if not self.asynchronous:
            return super()._raw_recv()
        return self._fill(*self._vec.step_wait())

    def _fill(self, obs: Obs, reward: np.ndarray, _term: np.ndarray, _trunc: np.ndarray, info: dict) -> RawStep:
        """AsyncVectorEnv's batch -> RawStep: the real flags and last obs come in `info` (`SelfResetting`)."""
        raw = self._raw
        raw.frames = obs
        raw.final_frames = info["last_obs"]
        np.copyto(raw.reward, reward)
        np.copyto(raw.terminated, info["term"])
        np.copyto(raw.truncated, info["trunc"])
        np.copyto(raw.game_over, info["over"])
        for k in self.metric_keys:
            np.copyto(raw.metrics[k], info[k])
        return raw

    def close(self) -> None:
        """Stop the workers; a step still in flight (an error between send and recv) is awaited
        first, or the workers terminated if it fails, so closing never masks the first error."""
        if self._in_flight and self.asynchronous:
            self._in_flight = False
            try:
                self._vec.step_wait()
            except Exception:  # noqa: BLE001 - the error that matters is the caller's
                self._vec.close(terminate=True)
                return
        self._vec.close()
