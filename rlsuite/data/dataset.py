"""The on-disk dataset format for offline data (behaviour cloning buffers, EWC Fisher data, EM
transitions, Decision Transformer training): what `rlsuite collect` writes and `rlsuite dataset info`
reads.

Layout of a dataset directory::

    manifest.json            written last, atomically: a directory without it is not a dataset
    episodes.npy             one row per stored episode (structured array, storage order):
                             start, length, return (sum of stored rewards), complete, env,
                             game_return (the env's info['episode'] return; nan if the env did not
                             report a whole game ending there), and one float column per metric the
                             env reports (NetHack score/depth/xp/turns; Montezuma rooms)
    chunk_00000/
        obs.npy              observations, (n, *shape) in the env's dtype; dict observations
                             (NetHack) are one file per key: obs.tty_chars.npy, obs.glyphs.npy, ...
        actions.npy          int64 (n,)
        rewards.npy          float32 (n,): the reward the env returned (collect uses evaluation
                             envs: raw, never clipped; the manifest's env config says)
        terminated.npy       bool (n,): the game really ended at this step (no future)
        truncated.npy        bool (n,): the time limit cut the episode at this step
        episode.npy          int64 (n,): the row in episodes.npy this step belongs to
        final_obs.npy        the observation that followed the last step of every episode whose
                             last step lies in this chunk (dict obs: final_obs.<key>.npy) ...
        final_step.npy       ... and that step's global index, int64, ascending
    chunk_00001/ ...

Steps are global indices 0..N-1 over the chunks in order (every chunk holds `chunk_size` steps but
the last). Each episode's steps are contiguous and in time order, so for a step t that is not the
last of its episode the next observation is obs[t + 1]; for the last step it is the episode's
final_obs row. Episodes appear in the order they ended, envs interleaved.

Unfinished episodes: when collection stops in the middle of an episode (a step budget ran out),
the episode is kept with `complete = False`: its last step has terminated = truncated = False,
and its final_obs row is the observation the env returned after that step (so every stored step
has a next observation, and a learner bootstraps from it like from a truncation). Return
statistics in the manifest count complete episodes only. Episodes that were never started into
(an env whose episode quota is met records nothing more) do not exist in the dataset.

Observations are stored as the env returned them (Atari: the stacked frames, frame_stack per row).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import gymnasium as gym
import numpy as np

from rlsuite.errors import UserError

FORMAT = "rlsuite-dataset"
VERSION = 1
DEFAULT_CHUNK_SIZE = 65536
MANIFEST = "manifest.json"
STEP_ARRAYS = {"actions": np.int64, "rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_,
               "episode": np.int64}

Obs = Any  # np.ndarray, or dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------
# spaces <-> JSON


def _json_number(x: float) -> float | str:
    x = float(x)
    return x if math.isfinite(x) else str(x)  # 'inf', '-inf', 'nan': strict JSON has no such numbers


def _bound(values: np.ndarray) -> Any:
    flat = np.asarray(values).ravel()
    if flat.size and np.all(flat == flat[0]):
        return _json_number(flat[0])
    return [_json_number(v) for v in flat]


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A JSON description of a Box, Discrete or Dict (of Box) space, enough to rebuild it."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "box", "shape": list(space.shape), "dtype": np.dtype(space.dtype).name,
                "low": _bound(space.low), "high": _bound(space.high)}
    raise TypeError(f"cannot store a {type(space).__name__} space")


def space_from_json(spec: dict[str, Any]) -> gym.Space:
    kind = spec["type"]
    if kind == "dict":
        return gym.spaces.Dict({k: space_from_json(s) for k, s in spec["spaces"].items()})
    if kind == "discrete":
        return gym.spaces.Discrete(int(spec["n"]), start=int(spec.get("start", 0)))
    if kind == "box":
        shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])

        def bound(value: Any) -> np.ndarray:
            if isinstance(value, list):
                return np.array([float(v) for v in value], dtype=np.float64).reshape(shape).astype(dtype)
            return np.full(shape, float(value)).astype(dtype)

        return gym.spaces.Box(bound(spec["low"]), bound(spec["high"]), shape, dtype)
    raise ValueError(f"unknown space type {kind!r}")


def _obs_keys(space: gym.Space) -> list[str] | None:
    return list(space.spaces) if isinstance(space, gym.spaces.Dict) else None


def _obs_files(prefix: str, keys: list[str] | None) -> dict[str | None, str]:
    """{key: file name} for an observation set ('obs' or 'final_obs'); key None for array obs."""
    if keys is None:
        return {None: f"{prefix}.npy"}
    return {k: f"{prefix}.{k}.npy" for k in keys}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# writing


class DatasetWriter:
    """Writes vector-env experience into a new dataset directory (see the module docstring).

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
        self.keys = _obs_keys(observation_space)
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
        manifest = {**_jsonable(self.user_manifest), **self._format_manifest(table)}
        from rlsuite.checkpoint import atomic_write_bytes

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
        index = len(self._episodes)
        start = self._written + self._pending_steps
        rewards = np.array([s[2] for s in steps], np.float32)
        record: dict[str, Any] = {"start": start, "length": len(steps),
                                  "return": float(rewards.astype(np.float64).sum()),
                                  "complete": complete, "env": i, "game_return": math.nan}
        if game:
            record["game_return"] = game.pop("return", math.nan)
            for k, v in game.items():
                if k not in self._metric_keys:
                    self._metric_keys.append(k)
                record[k] = v
        self._episodes.append(record)
        self._pending.append({
            "obs": self._stack([s[0] for s in steps]),
            "actions": np.array([s[1] for s in steps], np.int64),
            "rewards": rewards,
            "terminated": np.array([s[3] for s in steps], bool),
            "truncated": np.array([s[4] for s in steps], bool),
            "episode": np.full(len(steps), index, np.int64),
            "final_obs": final_row,
        })
        self._pending_steps += len(steps)
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
                parts.append({k: _slice(v, 0, take) for k, v in ep.items() if k != "final_obs"})
                if take == m:  # the episode's last step is in this chunk: so is its final obs
                    finals.append((self._written + taken + m - 1, ep["final_obs"]))
                    self._pending.pop(0)
                else:
                    self._pending[0] = {k: (v if k == "final_obs" else _slice(v, take, m)) for k, v in ep.items()}
                taken += take
            self._write_chunk(parts, finals)
            self._pending_steps -= n
            self._written += n

    def _write_chunk(self, parts: list[dict[str, Any]], finals: list[tuple[int, Any]]) -> None:
        name = f"chunk_{len(self._chunks):05d}"
        folder = self.path / name
        folder.mkdir()
        for key, file in _obs_files("obs", self.keys).items():
            np.save(folder / file, np.concatenate([p["obs"] if key is None else p["obs"][key] for p in parts]))
        for array, dtype in STEP_ARRAYS.items():
            np.save(folder / f"{array}.npy", np.concatenate([p[array] for p in parts]).astype(dtype, copy=False))
        rows = [f for _, f in finals]
        for key, file in _obs_files("final_obs", self.keys).items():
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


def _slice(value: Any, a: int, b: int) -> Any:
    if isinstance(value, dict):
        return {k: v[a:b] for k, v in value.items()}
    return value[a:b]


# --------------------------------------------------------------------------------------------
# reading


class Dataset:
    """A dataset directory, memory-mapped (`np.load(mmap_mode='r')`); see the module docstring.

    Step arrays (`actions`, `rewards`, `terminated`, `truncated`, `episode_index`) are concatenated
    on first use (8 bytes a step or less); observations are only ever gathered by index."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not self.path.is_dir():
            raise UserError(f"{self.path} is not a dataset directory (no such directory)")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{manifest_path} is missing: {self.path} is not a dataset, or its collection "
                            "did not finish") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{manifest_path} is unreadable or corrupt ({exc})") from None
        try:
            if self.manifest.get("format") != FORMAT:
                raise ValueError(f"format is {self.manifest.get('format')!r}, not {FORMAT!r}")
            if int(self.manifest["version"]) > VERSION:
                raise ValueError(f"version {self.manifest['version']} is newer than this rlsuite reads ({VERSION})")
            self.observation_space = space_from_json(self.manifest["observation_space"])
            self.action_space = space_from_json(self.manifest["action_space"])
            self.keys: list[str] | None = self.manifest["obs_keys"]
            chunks = self.manifest["chunks"]
            self._chunk_names = [str(c["name"]) for c in chunks]
            sizes = np.array([int(c["steps"]) for c in chunks], np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{manifest_path} is corrupt ({exc})") from None
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._length = int(self._offsets[-1])
        self._cache: dict[str, Any] = {}
        try:
            self.episode_table: np.ndarray = np.load(self.path / "episodes.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path / 'episodes.npy'} is missing or corrupt ({exc})") from None

    # -- files ----------------------------------------------------------------------------
    def _load(self, chunk: int, file: str) -> np.ndarray:
        key = f"{chunk}/{file}"
        if key not in self._cache:
            path = self.path / self._chunk_names[chunk] / file
            try:
                self._cache[key] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise UserError(f"{path} is missing or corrupt ({exc})") from None
        return self._cache[key]

    def _concat(self, name: str) -> np.ndarray:
        if name not in self._cache:
            parts = [np.asarray(self._load(c, f"{name}.npy")) for c in range(len(self._chunk_names))]
            self._cache[name] = np.concatenate(parts) if parts else np.zeros(0, STEP_ARRAYS[name])
        return self._cache[name]

    def _gather(self, prefix: str, chunks: np.ndarray, rows: np.ndarray) -> Obs:
        out: dict[str | None, np.ndarray] = {}
        for key, file in _obs_files(prefix, self.keys).items():
            space = self.observation_space if key is None else self.observation_space[key]
            result = np.empty((len(rows), *space.shape), space.dtype)
            for c in np.unique(chunks):
                sel = chunks == c
                result[sel] = self._load(int(c), file)[rows[sel]]
            out[key] = result
        return out[None] if self.keys is None else out

    def _indices(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._length):
            raise IndexError(f"step index out of range [0, {self._length})")
        return idx

    # -- public ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._length

    @property
    def num_episodes(self) -> int:
        return int(len(self.episode_table))

    @property
    def episodes(self) -> list[tuple[int, int, float, bool]]:
        """(start, length, return, complete) per stored episode, in storage order."""
        t = self.episode_table
        return [(int(s), int(n), float(r), bool(c)) for s, n, r, c in
                zip(t["start"], t["length"], t["return"], t["complete"])]

    @property
    def actions(self) -> np.ndarray:
        return self._concat("actions")

    @property
    def rewards(self) -> np.ndarray:
        return self._concat("rewards")

    @property
    def terminated(self) -> np.ndarray:
        return self._concat("terminated")

    @property
    def truncated(self) -> np.ndarray:
        return self._concat("truncated")

    @property
    def episode_index(self) -> np.ndarray:
        """The episode (row of `episode_table`) of every step."""
        return self._concat("episode")

    def observations(self, indices: Any) -> Obs:
        """The observations the steps at `indices` acted in (array, or dict of arrays)."""
        idx = self._indices(indices)
        chunks = np.searchsorted(self._offsets, idx, side="right") - 1
        return self._gather("obs", chunks, idx - self._offsets[chunks])

    def episode_ends(self, indices: Any) -> np.ndarray:
        """True where a step is the last stored step of its episode."""
        idx = self._indices(indices)
        t = self.episode_table
        ep = self.episode_index[idx]
        return idx == (np.asarray(t["start"])[ep] + np.asarray(t["length"])[ep] - 1)

    def next_observations(self, indices: Any) -> Obs:
        """The observation after each step: obs[t + 1] inside an episode, the stored final observation
        at an episode's last step (the true last frame of an ended episode; for an unfinished one, the
        observation the env returned after it)."""
        idx = self._indices(indices)
        ends = self.episode_ends(idx)
        nxt = np.where(ends, 0, idx + 1)
        inner = self.observations(nxt)
        if not ends.any():
            return inner
        final_steps = self._final_steps()
        pos = np.searchsorted(final_steps["step"], idx[ends])
        final = self._gather("final_obs", final_steps["chunk"][pos], final_steps["row"][pos])
        if self.keys is None:
            inner[ends] = final
        else:
            for k in self.keys:
                inner[k][ends] = final[k]
        return inner

    def _final_steps(self) -> dict[str, np.ndarray]:
        if "_finals" not in self._cache:
            steps, chunks, rows = [], [], []
            for c in range(len(self._chunk_names)):
                s = np.asarray(self._load(c, "final_step.npy"))
                steps.append(s)
                chunks.append(np.full(len(s), c, np.int64))
                rows.append(np.arange(len(s), dtype=np.int64))
            cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
            self._cache["_finals"] = {"step": cat(steps), "chunk": cat(chunks), "row": cat(rows)}
        return self._cache["_finals"]

    def sample(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        """`batch` step indices, uniform over all stored transitions (with replacement)."""
        if self._length == 0:
            raise ValueError("cannot sample from an empty dataset")
        return rng.integers(0, self._length, size=batch, dtype=np.int64)

    def sample_windows(self, batch: int, k: int, rng: np.random.Generator) -> np.ndarray:
        """(batch, k) step indices of windows of k consecutive steps inside one episode each, uniform
        over all such windows (episodes shorter than k give none)."""
        t = self.episode_table
        counts = np.maximum(np.asarray(t["length"]) - k + 1, 0)
        total = int(counts.sum())
        if total == 0:
            raise ValueError(f"no episode has {k} steps")
        flat = rng.integers(0, total, size=batch)
        cum = np.cumsum(counts)
        ep = np.searchsorted(cum, flat, side="right")
        offset = flat - (cum[ep] - counts[ep])
        starts = np.asarray(t["start"])[ep] + offset
        return starts[:, None] + np.arange(k)[None, :]

    def size_bytes(self) -> int:
        """Bytes of every file in the dataset directory."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def stats(self) -> dict[str, Any]:
        return dict(self.manifest.get("stats", {}))


# --------------------------------------------------------------------------------------------
# collecting


def collect(agent: Any, env: Any, out: str | Path, *, steps: int | None = None, episodes: int | None = None,
            epsilon: float = 0.0, rng: np.random.Generator | None = None, seed: int | Iterable[int] = 0,
            manifest: dict[str, Any] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Dataset:
    """Play `agent.act(obs, epsilon, rng)` on the vector env `env` and store every step in a new
    dataset at `out`; returns it opened.

    Exactly one of `steps` (transitions to store) or `episodes` (whole episodes to store). Both are
    split over the envs in advance as rlsuite.evaluate.episode_quotas does (env i records its
    first quota[i] steps or episodes, then nothing more), so neither fast-finishing envs nor short
    games are over-sampled. With `episodes` every stored episode is complete; with `steps` the
    episode each env is in when its budget runs out is kept, marked complete=False.

    A recurrent agent's evaluation state is driven as rlsuite.evaluate.evaluate does (`eval_reset`,
    `eval_episode_starts`). `seed` seeds the env reset; `rng` is the exploration stream (None: the
    agent's own). The manifest gets `manifest` plus epsilon, num_envs, the stopping rule and the
    format's statistics.
    """
    import torch

    from rlsuite.evaluate import episode_quotas

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
