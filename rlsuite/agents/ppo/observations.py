"""Observation batches as PPO handles them: one array, or a dict of arrays (NetHack), from numpy or
torch. Mapping a function over them, moving them to the device, zero batches of a space, rollout
rows (allocated and filled), and the frame stack of an observation space (what RND reads)."""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch


def map_obs(fn: Callable[[Any], Any], obs: Any) -> Any:
    """Apply `fn` to an observation batch, or to every array of a dict batch (NetHack)."""
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)


def to_tensor(obs: Any, device: torch.device) -> Any:
    """numpy / torch observations (or a dict of them) -> tensors on `device`."""
    return map_obs(lambda v: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v).to(device), obs)


def example_batch(space: gym.Space) -> Any:
    """A batch of one zero observation of `space` (for shape-finding dry runs)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: example_batch(s) for k, s in space.spaces.items()}
    return torch.zeros((1, *space.shape), dtype=torch.from_numpy(np.zeros(0, space.dtype)).dtype)


def alloc_obs(space: gym.Space, lead: tuple[int, ...], device: torch.device) -> Any:
    """Zeros of shape lead + one observation, in the space's dtype (uint8 frames stay bytes)."""
    return map_obs(lambda e: torch.zeros((*lead, *e.shape[1:]), dtype=e.dtype, device=device), example_batch(space))


def copy_obs_row(dst: Any, pos: int, src: Any) -> None:
    """dst[pos] = src, for array or dict observations."""
    if isinstance(dst, dict):
        for k, v in dst.items():
            v[pos] = src[k]
    else:
        dst[pos] = src


def frame_stack_of(space: gym.Space) -> int:
    """Atari stacks are uint8 (k, 84, 84) with k > 1 frames; MinAtar's (C, 10, 10) planes are not frames."""
    shape = getattr(space, "shape", None) or ()
    return int(shape[0]) if len(shape) == 3 and min(shape[1:]) >= 36 else 1
