"""`export_replay`: the replay buffer a DQN run saved (`rlsuite train ... --save-replay`) as an rlsuite dataset.

The replay directory (`run/replay`, written by rlsuite.replay.persist.save_fields from
ReplayBuffer.save) holds the StreamStorage fields (rlsuite.replay.storage) as (num_envs, slots, ...)
rows in chunked .npy files, and in meta.json the layout (frame_stack, frame shapes) and each stream's
cursor. Stream e is a ring: absolute time T lives in slot T % slots, the live times are
max(0, cursor - slots) .. cursor - 1. A step slot holds the newest frame of the observation acted in,
the action, the reward and the end flags; `first` marks an episode's first step; an episode ending at
T has its true final observation's newest frame in slot T + 1, flagged `final`.

What the dataset gets (layout: rlsuite.data.format), per stream (the `env` column):

* episodes contiguous and whole: the steps from a `first` slot to the step with terminated or
  truncated set, as the training env flagged them (terminated = a lost life too, with
  env.terminal_on_life_loss; the manifest holds the env config);
* observations rebuilt as the agent saw them: with frame_stack k > 1 the stack of the episode's last
  k frames, zeros before its first one (rlsuite.replay.ops.frame_stack_gather's rule); the final
  observation is the stack ending at the `final` slot;
* rewards as stored: the training env's (sign-clipped when env.clip_rewards; the manifest says);
* the episode the ring had partly overwritten (its `first` slot is gone) is dropped; each stream's
  unfinished last episode is kept, complete=False, without its last step: that step's next
  observation (the env's current one) is not in the replay, so the step before it ends the episode
  with the last step's frame stack as its final observation;
* episodes ordered by the vector step of their last step (as `rlsuite collect` orders them), streams
  interleaved; ties by stream.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlsuite.data.dataset import Dataset
from rlsuite.data.format import DEFAULT_CHUNK_SIZE
from rlsuite.data.writer import DatasetWriter
from rlsuite.errors import UserError

_BOX_KEY = "obs"  # storage key of a non-Dict observation (rlsuite.replay.buffer)


class _Field:
    """One stored field as (num_envs * slots, ...) rows over its memory-mapped chunk files."""

    def __init__(self, directory: Path, name: str, entry: dict[str, Any]) -> None:
        self.chunks = []
        for c in range(int(entry["chunks"])):
            path = directory / f"{name}-{c:05d}.npy"
            try:
                self.chunks.append(np.load(path, mmap_mode="r"))
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read {path} ({type(exc).__name__}); the replay directory is corrupt") from None
        shape = entry["shape"]
        rows = sum(len(c) for c in self.chunks)
        if rows != shape[0] * shape[1]:
            raise UserError(f"replay {directory} is incomplete: field '{name}' has {rows} of {shape[0] * shape[1]} rows")
        self.per_chunk = len(self.chunks[0]) if self.chunks else 1

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows by global index (env * slots + slot)."""
        chunk, offset = np.divmod(rows, self.per_chunk)
        out = np.empty((len(rows), *self.chunks[0].shape[1:]), self.chunks[0].dtype)
        for c in np.unique(chunk):
            sel = chunk == c
            out[sel] = self.chunks[int(c)][offset[sel]]
        return out

    def all(self) -> np.ndarray:
        return np.concatenate([np.asarray(c) for c in self.chunks])


def _run_spaces(run: Path) -> tuple[Any, Any, Any]:
    """(run config, env config, a 1-env training env's (observation space, action space)) of a run."""
    from rlsuite import config
    from rlsuite.loops import tasks
    from rlsuite.envs import make

    cfg = config.build_run_config(config_file=run / "config.toml")
    env_cfg = tasks.env_config(cfg, tasks.task_of(cfg, 0)) if cfg.train.tasks else cfg.env
    env = make(env_cfg, 1, 0)
    try:
        return cfg, env_cfg, (env.single_observation_space, env.single_action_space)
    finally:
        env.close()


def _stacks(frames: np.ndarray, k: int) -> np.ndarray:
    """(L, k, *F) stacks ending at each of the L frames, zeros before the first; frames as is when k == 1."""
    if k == 1:
        return frames
    padded = np.concatenate([np.zeros((k - 1, *frames.shape[1:]), frames.dtype), frames])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=0)  # (L, *F, k)
    return np.ascontiguousarray(np.moveaxis(windows, -1, 1))


def _stream_episodes(flags: dict[str, np.ndarray], env: int, slots: int, cursor: int,
                     vector_steps: int) -> list[dict[str, Any]]:
    """One stream's episodes: slot rows of their steps and of the observation after the last step."""
    times = np.arange(max(0, cursor - slots), cursor)
    rows = env * slots + times % slots
    first, final = flags["first"][rows], flags["final"][rows]
    ended = (flags["terminated"][rows] | flags["truncated"][rows]) & ~final
    # vector step of every slot: all streams end at the same step; final slots take no step
    steps_after = np.cumsum((~final)[::-1])[::-1] - (~final)
    vstep = vector_steps - 1 - steps_after
    out = []
    starts = np.flatnonzero(first & ~final)
    ends = np.flatnonzero(ended)
    for s in starts:  # the partly overwritten episode before the first `first` slot is never visited
        j = ends[np.searchsorted(ends, s)] if np.searchsorted(ends, s) < len(ends) else None
        if j is not None and j + 1 < len(times):
            if not final[j + 1]:
                raise UserError(f"replay stream {env} has no final observation after its episode end at time "
                                f"{int(times[j])}; the replay directory is corrupt")
            out.append({"env": env, "rows": rows[s:j + 1], "next": rows[j + 1], "complete": True,
                        "end_step": int(vstep[j])})
        elif j is None and s < len(times) - 1:  # unfinished: the last step's next observation is not stored
            out.append({"env": env, "rows": rows[s:len(times) - 1], "next": rows[len(times) - 1], "complete": False,
                        "end_step": int(vstep[len(times) - 2])})
    return out


def export_replay(run_dir: str | Path, out: str | Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Dataset:
    """Write the replay buffer saved in `run_dir`/replay as a new dataset at `out`; returns it opened.

    Conventions in the module docstring. Raises UserError when `run_dir` is not a run, has no saved
    replay (train with --save-replay) or the replay does not match the run's observation space.
    """
    from rlsuite.replay import persist

    run = Path(run_dir)
    if not (run / "config.toml").is_file():
        raise UserError(f"{run} is not a run directory (no config.toml)")
    replay = run / "replay"
    if not (replay / "meta.json").is_file():
        raise UserError(f"{run} has no saved replay buffer ({replay}/meta.json); only a run trained with "
                        "--save-replay (train.save_replay=true) keeps one")
    meta = persist.read_meta(replay)
    cfg, env_cfg, (obs_space, action_space) = _run_spaces(run)
    layout, state = meta["layout"], meta["state"]["storage"]
    num_envs, slots, k = int(layout["num_envs"]), int(layout["slots"]), int(layout["frame_stack"])
    is_dict = isinstance(obs_space, gym.spaces.Dict)
    keys = [str(key) for key in obs_space.spaces] if is_dict else [_BOX_KEY]
    if sorted(layout["frames"]) != sorted(keys):
        raise UserError(f"replay {replay} stores observation keys {sorted(layout['frames'])}, but the run's env has "
                        f"{sorted(keys)}")
    fields = {name: _Field(replay, name, entry) for name, entry in meta["fields"].items() if name != "priority"}
    flags = {name: fields[name].all() for name in ("first", "terminated", "truncated", "final")}
    action, reward = fields["action"].all(), fields["reward"].all()
    vector_steps = int(state["num_added"]) // num_envs
    episodes = [ep for e in range(num_envs)
                for ep in _stream_episodes(flags, e, slots, int(state["cursor"][e]), vector_steps)]
    episodes.sort(key=lambda ep: (ep["end_step"], ep["env"]))
    manifest = {
        "source": "rlsuite replay", "run_dir": str(run), "replay_dir": str(replay), "algo": cfg.algo,
        "env_id": env_cfg.id, "env": dataclasses.asdict(env_cfg), "training_env": True, "num_envs": num_envs,
        "frame_stack": k, "replay_added": int(state["num_added"]), "tasks": list(cfg.train.tasks or []),
        "reward": "clipped to sign(r) (env.clip_rewards)" if env_cfg.clip_rewards else "raw, as the env returned it",
        "terminated": ("a lost life or a game over (env.terminal_on_life_loss)" if env_cfg.terminal_on_life_loss
                       else "the episode really ended"),
    }
    writer = DatasetWriter(out, obs_space, action_space, manifest, chunk_size)
    for ep in episodes:
        n = len(ep["rows"])
        rows = np.append(ep["rows"], ep["next"])  # the last stack is the next observation: final or unfinished
        stacked = {}
        for key in keys:
            space = obs_space[key] if is_dict else obs_space
            stacked[key] = _stacks(fields[f"frames.{key}"].take(rows), k).astype(space.dtype, copy=False)
            if stacked[key].shape[1:] != space.shape:
                raise UserError(f"replay frames of '{key}' rebuild observations of shape {stacked[key].shape[1:]}, "
                                f"but the run's env has {space.shape}")
        if is_dict:
            obs, final = {key: v[:n] for key, v in stacked.items()}, {key: v[n] for key, v in stacked.items()}
        else:
            obs, final = stacked[_BOX_KEY][:n], stacked[_BOX_KEY][n]
        writer.add_episode(obs, action[ep["rows"]], reward[ep["rows"]], flags["terminated"][ep["rows"]],
                           flags["truncated"][ep["rows"]], final, complete=ep["complete"], env=ep["env"])
    writer.close()
    return Dataset(out)
