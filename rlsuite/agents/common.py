"""Small helpers every agent uses: observations to tensors, batch sizes, and the single-thread
switch for updates of small networks on CPU."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

# A forward pass on a handful of observations is too small to split across threads: the
# OpenMP barrier then waits on a thread that envpool's workers or another process pushed off
# its core (measured here: a batch-1 Nature CNN forward took 1 ms on one thread, 15-70 ms on
# two under load). Switching the thread count costs well under a microsecond.
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


def batch_size_of(obs: Any) -> int:
    """Rows of an observation batch: an array, or a dict of arrays (the length of its first)."""
    if isinstance(obs, dict):
        return len(next(iter(obs.values())))
    return len(obs)


def example_batch(space: spaces.Space) -> Any:
    """A batch of one observation from `space` (for shape-finding dry runs)."""
    sample = space.sample()
    if isinstance(sample, dict):
        return {k: torch.as_tensor(v[None]) for k, v in sample.items()}
    return torch.as_tensor(sample[None])


def zeros_batch(space: spaces.Space, n: int, device: torch.device) -> Any:
    """A batch of `n` all-zero observations of `space` on `device` (rlsuite.run.speed's timing probes:
    the values do not matter, so no random stream is drawn)."""
    if isinstance(space, spaces.Dict):
        return {k: zeros_batch(s, n, device) for k, s in space.spaces.items()}
    return torch.zeros((n, *space.shape), dtype=torch.as_tensor(np.zeros((), space.dtype)).dtype, device=device)


def to_tensor(obs: Any, device: torch.device) -> Any:
    """numpy/torch observation (or dict of them) -> tensor(s) on `device`, without copying on CPU."""
    if isinstance(obs, dict):
        return {k: to_tensor(v, device) for k, v in obs.items()}
    if isinstance(obs, np.ndarray):
        obs = torch.from_numpy(obs)
    return obs.to(device, non_blocking=True)


def gradient_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: Any, max_grad_norm: float,
                  update: int) -> torch.Tensor:
    """One optimizer step on `loss`: TrainingDiverged when it is not finite (nothing is changed
    then), else backward, the global-norm clip of `params` (0 = none) and the step. Returns the
    gradient norm before clipping (0 without clipping)."""
    from rlsuite.errors import TrainingDiverged

    if not torch.isfinite(loss):
        raise TrainingDiverged(f"non-finite loss {float(loss)} at update {update:,}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm) if max_grad_norm > 0 else torch.zeros(())
    optimizer.step()
    return grad_norm


def after_optimizer_step(agent: Any) -> None:
    """What follows every optimizer step of an online agent (DQN, PPO), in this order: its
    weight-space hooks (GMP masks, NaP's projection), the plasticity probe when armed, the count."""
    for hook in agent.post_step_hooks:
        hook(agent)
    if agent.probe.armed:
        agent.probe.after_update()
    agent.num_updates += 1


def policy_actions(logits: torch.Tensor, sample: bool, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Evaluation actions (B,) int64 from action logits (B, A): sampled from their softmax or the
    most likely, then uniformly random with probability `epsilon`, all drawn from `rng`."""
    num_actions = logits.shape[-1]
    if sample:
        probs = torch.softmax(logits.float(), -1).numpy().astype(np.float64)
        actions = np.array([rng.choice(num_actions, p=p / p.sum()) for p in probs], np.int64)
    else:
        actions = logits.argmax(-1).numpy().astype(np.int64)
    explore = rng.random(len(actions)) < epsilon
    return np.where(explore, rng.integers(0, num_actions, size=len(actions)), actions)
