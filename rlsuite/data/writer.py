"""`DatasetWriter`: writes the dataset format of `rlsuite.data.format`, one vector step at a time."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlsuite.errors import UserError

from rlsuite.data.format import (DEFAULT_CHUNK_SIZE, FORMAT, MANIFEST, STEP_ARRAYS, VERSION, Obs, jsonable, obs_files,
                                 obs_keys, slice_rows, space_to_json)


class DatasetWriter:
    """Writes vector-env experience into a new dataset directory (layout: rlsuite.data.format).

    `add` takes one whole vector step (num_envs rows, the layout of rlsuite.agents.base.Transition);
    each env's steps are held until its episode ends and then written contiguously. `close` writes
    the rest and the manifest (the user's `manifest` dict plus the format's own keys and statistics).
    """

    def __init__(self, path: str | Path, observation_space: gym.Space, action_space: gym.Space,
                 manifest: dict[str, Any] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            what = "a file" if not self.path.is_dir() else "a non-empty directory"
            raise UserError(f"dataset output {self.path} is {what}; choose a new directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.observation_space, self.action_space = observation_space, action_space
        self.keys = obs_keys(observation_space)
        self.user_manifest = dict(manifest or {})
        self.chunk_size = int(chunk_size)
        self._envs: dict[int, list[tuple]] = {}  # env -> [(obs row, action, reward, term, trunc)]
        self._pending: list[dict[str, Any]] = []  # episodes not yet in a chunk file, in order
        self._pending_steps = 0
        self._written = 0  # steps in chunk files
        self._chunks: list[dict[str, Any]] = []
        self._episodes: list[dict[str, Any]] = []
        self._metric_keys: list[str] = []
        self.closed = False

    # -- rows ---------------------------------------------------------------------------
    def _row(self, obs: Obs, i: int) -> Any:
        if self.keys is None:
            return np.array(obs[i], copy=True)
        return {k: np.array(obs[k][i], copy=True) for k in self.keys}

    def _stack(self, rows: list[Any]) -> Obs:
        if self.keys is None:
            return np.stack(rows)
        return {k: np.stack([r[k] for r in rows]) for k in self.keys}

    # -- public ---------------------------------------------------------------------------
    def add(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, final_obs: Obs | None, *, episode_info: dict[str, np.ndarray] | None = None,
            mask: np.ndarray | None = None) -> None:
        """One vector step: `obs` the observations the `actions` were taken in; `final_obs` the true
        last observations of the envs whose episode ended (rows of the others are ignored; None when
        none ended). `episode_info`: the env's info['episode'] (game return and metrics, kept for
        episodes that end where it says `done`). `mask`: which envs' rows to record (default all)."""
        actions, rewards = np.asarray(actions), np.asarray(rewards)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        rows = range(len(actions)) if mask is None else np.flatnonzero(mask)
        for i in rows:
            i = int(i)
            buf = self._envs.setdefault(i, [])
            buf.append((self._row(obs, i), int(actions[i]), float(rewards[i]), bool(terminated[i]),
                        bool(truncated[i])))
            if terminated[i] or truncated[i]:
                if final_obs is None:
                    raise ValueError(f"env {i} ended an episode but no final_obs was given")
                self._end_episode(i, self._row(final_obs, i), True, self._game(episode_info, i))

    def cut(self, env_index: int, next_obs: Obs) -> None:
        """Store env `env_index`'s unfinished episode now (complete=False); `next_obs` (num_envs rows)
        holds the observation that followed its last step. Nothing happens if it has no steps."""
        if self._envs.get(env_index):
            self._end_episode(env_index, self._row(next_obs, env_index), False, None)

    def add_episode(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                    truncated: np.ndarray, final_obs: Obs, *, complete: bool = True, env: int = 0) -> None:
        """One whole episode at once (importers and exporters, which hold episodes, not vector steps):
        `obs` its T observations (T rows, or a dict of them), the step arrays (T,), `final_obs` the one
        observation that followed its last step. complete=False stores an unfinished episode (its last
        step must then have terminated = truncated = False); `env` is its stream in the episode table.
        The arrays are held, not copied, until their chunk is written. Raises ValueError if the lengths
        differ or the flags break the format's rules (end flags at the last step only)."""
        actions, rewards = np.asarray(actions, np.int64), np.asarray(rewards, np.float32)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        n = len(actions)
        if n == 0:
            return
        rows = obs if self.keys is None else {k: obs[k] for k in self.keys}
        lengths = {len(rewards), len(terminated), len(truncated)}
        lengths |= {len(rows)} if self.keys is None else {len(v) for v in rows.values()}
        if lengths != {n}:
            raise ValueError(f"episode arrays have different lengths {sorted(lengths | {n})}")
        if self._envs.get(env):
            raise ValueError(f"env {env} has an episode in progress from add(); finish it first")
        ended = terminated | truncated
        if ended[:-1].any() or bool(ended[-1]) != complete:
            raise ValueError("end flags must be set at the last step of a complete episode and nowhere else")
        self._store_episode(env, {"obs": rows, "actions": actions, "rewards": rewards, "terminated": terminated,
                                  "truncated": truncated}, final_obs, complete, None)

    def close(self, next_obs: Obs | None = None) -> dict[str, Any]:
        """Write what is left and the manifest; returns the manifest. With `next_obs` (the last obs the
        env returned) unfinished episodes are kept (complete=False), without it they are dropped."""
        if self.closed:
            raise RuntimeError("dataset writer already closed")
        for i in sorted(self._envs):
            if next_obs is not None:
                self.cut(i, next_obs)
            self._envs[i] = []
        self._flush(final=True)
        if self._episodes:
            table = np.zeros(len(self._episodes), dtype=self._episode_dtype())
            for j, ep in enumerate(self._episodes):
                for name in table.dtype.names:
                    table[name][j] = ep.get(name, math.nan)
        else:
            table = np.zeros(0, dtype=self._episode_dtype())
        np.save(self.path / "episodes.npy", table)
        manifest = {**jsonable(self.user_manifest), **self._format_manifest(table)}
        from rlsuite.run.checkpoint import atomic_write_bytes

        data = (json.dumps(manifest, indent=1, allow_nan=False) + "\n").encode()
        atomic_write_bytes(self.path / MANIFEST, lambda fh: fh.write(data))
        self.closed = True
        return manifest

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _game(episode_info: dict[str, np.ndarray] | None, i: int) -> dict[str, float] | None:
        if not episode_info or not bool(np.asarray(episode_info["done"])[i]):
            return None
        return {k: float(np.asarray(v)[i]) for k, v in episode_info.items() if k not in ("done", "length")}

    def _end_episode(self, i: int, final_row: Any, complete: bool, game: dict[str, float] | None) -> None:
        steps = self._envs[i]
        self._envs[i] = []
        if not steps:
            return
        arrays = {"obs": self._stack([s[0] for s in steps]),
                  "actions": np.array([s[1] for s in steps], np.int64),
                  "rewards": np.array([s[2] for s in steps], np.float32),
                  "terminated": np.array([s[3] for s in steps], bool),
                  "truncated": np.array([s[4] for s in steps], bool)}
        self._store_episode(i, arrays, final_row, complete, game)

    def _store_episode(self, i: int, arrays: dict[str, Any], final_row: Any, complete: bool,
                       game: dict[str, float] | None) -> None:
        """Queue one episode's step arrays (obs, actions, rewards, terminated, truncated) for the chunks."""
        index = len(self._episodes)
        start = self._written + self._pending_steps
        rewards = arrays["rewards"]
        length = len(rewards)
        record: dict[str, Any] = {"start": start, "length": length,
                                  "return": float(rewards.astype(np.float64).sum()),
                                  "complete": complete, "env": i, "game_return": math.nan}
        if game:
            record["game_return"] = game.pop("return", math.nan)
            for k, v in game.items():
                if k not in self._metric_keys:
                    self._metric_keys.append(k)
                record[k] = v
        self._episodes.append(record)
        self._pending.append({**arrays, "episode": np.full(length, index, np.int64), "final_obs": final_row})
        self._pending_steps += length
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write full chunks (and, when `final`, the rest) from the pending episodes."""
        while self._pending_steps >= self.chunk_size or (final and self._pending_steps > 0):
            n = min(self.chunk_size, self._pending_steps)
            parts: list[dict[str, Any]] = []
            finals: list[tuple[int, Any]] = []
            taken = 0
            while taken < n:
                ep = self._pending[0]
                m = len(ep["actions"])
                take = min(m, n - taken)
                parts.append({k: slice_rows(v, 0, take) for k, v in ep.items() if k != "final_obs"})
                if take == m:  # the episode's last step is in this chunk: so is its final obs
                    finals.append((self._written + taken + m - 1, ep["final_obs"]))
                    self._pending.pop(0)
                else:
                    self._pending[0] = {k: (v if k == "final_obs" else slice_rows(v, take, m)) for k, v in ep.items()}
                taken += take
            self._write_chunk(parts, finals)
            self._pending_steps -= n
            self._written += n

    def _write_chunk(self, parts: list[dict[str, Any]], finals: list[tuple[int, Any]]) -> None:
        name = f"chunk_{len(self._chunks):05d}"
        folder = self.path / name
        folder.mkdir()
        for key, file in obs_files("obs", self.keys).items():
            np.save(folder / file, np.concatenate([p["obs"] if key is None else p["obs"][key] for p in parts]))
        for array, dtype in STEP_ARRAYS.items():
            np.save(folder / f"{array}.npy", np.concatenate([p[array] for p in parts]).astype(dtype, copy=False))
        rows = [f for _, f in finals]
        for key, file in obs_files("final_obs", self.keys).items():
            space = self.observation_space if key is None else self.observation_space[key]
            values = [r if key is None else r[key] for r in rows]
            stacked = np.stack(values) if values else np.zeros((0, *space.shape), space.dtype)
            np.save(folder / file, stacked)
        np.save(folder / "final_step.npy", np.array([s for s, _ in finals], np.int64))
        steps = sum(len(p["actions"]) for p in parts)
        self._chunks.append({"name": name, "steps": steps})

    def _episode_dtype(self) -> np.dtype:
        fields = [("start", np.int64), ("length", np.int64), ("return", np.float64), ("complete", np.bool_),
                  ("env", np.int64), ("game_return", np.float64)]
        return np.dtype(fields + [(k, np.float64) for k in self._metric_keys])

    def _format_manifest(self, table: np.ndarray) -> dict[str, Any]:
        done = table[table["complete"]] if len(table) else table
        returns = done["return"] if len(done) else np.zeros(0)
        stats: dict[str, Any] = {
            "episodes": int(len(done)), "transitions": int(self._written),
            "incomplete_episodes": int(len(table) - len(done)),
            "return_mean": float(returns.mean()) if len(returns) else None,
            "return_std": float(returns.std()) if len(returns) else None,
            "return_min": float(returns.min()) if len(returns) else None,
            "return_max": float(returns.max()) if len(returns) else None,
            "length_mean": float(done["length"].mean()) if len(done) else None,
        }
        for k in self._metric_keys:
            values = done[k][np.isfinite(done[k])] if len(done) else np.zeros(0)
            stats[f"{k}_mean"] = float(values.mean()) if len(values) else None
        return {
            "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "obs_keys": self.keys, "chunk_size": self.chunk_size, "chunks": self._chunks,
            "num_episodes": int(len(table)), "transitions": int(self._written), "stats": stats,
        }
