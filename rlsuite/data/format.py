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

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


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


def obs_keys(space: gym.Space) -> list[str] | None:
    """The keys of a dict observation space, stored one file each; None for an array space."""
    return list(space.spaces) if isinstance(space, gym.spaces.Dict) else None


def obs_files(prefix: str, keys: list[str] | None) -> dict[str | None, str]:
    """{key: file name} for an observation set ('obs' or 'final_obs'); key None for array obs."""
    if keys is None:
        return {None: f"{prefix}.npy"}
    return {k: f"{prefix}.{k}.npy" for k in keys}


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data: numpy arrays and scalars to lists and numbers, paths to strings,
    non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def slice_rows(value: Any, a: int, b: int) -> Any:
    """Rows a:b of an array, or of every array of a dict."""
    if isinstance(value, dict):
        return {k: v[a:b] for k, v in value.items()}
    return value[a:b]
