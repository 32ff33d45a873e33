"""Small helpers every agent uses: observations to tensors, batch sizes, and the single-thread
switch for updates of small networks on CPU."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

SMALL_BATCH = 8
SMALL_NETWORK_PARAMS = 500_000  # MLPs and the MinAtar net; the Nature CNN has 1.7M


@contextlib.contextmanager
def single_thread_if(condition: bool) -> Iterator[None]:
    threads = torch.get_num_threads()
    if not condition or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _batch_size(obs: Any) -> int:
    if isinstance(obs, dict):
        return len(next(iter(obs.values())))
    return len(obs)


def example_batch(space: spaces.Space) -> Any:
    """A batch of one observation from `space` (for shape-finding dry runs)."""
    sample = space.sample()
    if isinstance(sample, dict):
        return {k: torch.as_tensor(v[None]) for k, v in sample.items()}
    return torch.as_tensor(sample[None])


def to_tensor(obs: Any, device: torch.device) -> Any:
    """numpy/torch observation (or dict of them) -> tensor(s) on `device`, without copying on CPU."""
    if isinstance(obs, dict):
        return {k: to_tensor(v, device) for k, v in obs.items()}
    if isinstance(obs, np.ndarray):
        obs = torch.from_numpy(obs)
    return obs.to(device, non_blocking=True)
