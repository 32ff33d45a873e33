"""Small helpers every agent uses: observations to tensors, batch sizes, and the single-thread
switch for updates of small networks on CPU."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from rlsuite.nn.temperature import adaptive_logits

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


EVAL_TEMPERATURES = ("fixed", "adaptive")
"""agent.eval_temperature's choices: the policy's own logits, or the adaptive temperature of
Veličković et al. (arXiv 2410.01104; rlsuite.nn.temperature) applied to them at evaluation."""


def evaluation_logits(logits: torch.Tensor, temperature: str = "fixed") -> torch.Tensor:
    """The action logits (B, A) an evaluation acts on: `logits` as they are ('fixed'), or
    beta * logits in fp32 with the entropy-chosen inverse temperature beta >= 1 of each row
    ('adaptive', rlsuite.nn.temperature.adaptive_logits). The one place every agent's
    agent.eval_temperature is applied (the DT through `policy_actions`, PPO before its own sampler).
    Raises ValueError on another name (the config's choice() refuses it first)."""
    if temperature == "fixed":
        return logits
    if temperature == "adaptive":
        return adaptive_logits(logits, dim=-1)
    raise ValueError(f"unknown evaluation temperature {temperature!r}; one of {', '.join(EVAL_TEMPERATURES)}")


def check_eval_temperature(run: Any) -> None:
    """The cross-field rule of agent.eval_temperature (a config's check_run calls it before anything
    is written): 'adaptive' needs agent.eval_sample, since a greedy action (argmax) is the same at
    every temperature and the option would silently change nothing. Raises UserError."""
    from rlsuite.errors import UserError

    agent = run.agent
    if getattr(agent, "eval_temperature", "fixed") == "adaptive" and not agent.eval_sample:
        raise UserError("agent.eval_temperature=adaptive needs agent.eval_sample=true: a greedy evaluation takes "
                        "the argmax, which no temperature changes")


def refuse_teacher_temperature(run: Any) -> None:
    """finetune.temperature_rule shapes DQN's distillation teacher softmax(Q*/tau) only; an agent whose
    retention distils its own policy logits (PPO, the DT) refuses 'adaptive' rather than ignore it
    (its config's check_run calls this). Raises UserError."""
    from rlsuite.errors import UserError

    rule = getattr(getattr(run, "finetune", None), "temperature_rule", "fixed")
    if rule != "fixed":
        raise UserError(f"finetune.temperature_rule={rule} applies to DQN's distillation softmax(Q/tau) only; "
                        f"agent '{run.algo}' distils its policy's own logits (leave it 'fixed')")


def policy_actions(logits: torch.Tensor, sample: bool, epsilon: float, rng: np.random.Generator,
                   temperature: str = "fixed") -> np.ndarray:
    """Evaluation actions (B,) int64 from action logits (B, A): sampled from their softmax or the
    most likely, then uniformly random with probability `epsilon`, all drawn from `rng`.
    `temperature`: agent.eval_temperature, applied to the logits first (`evaluation_logits`)."""
    num_actions = logits.shape[-1]
    logits = evaluation_logits(logits, temperature)
    if sample:
        probs = torch.softmax(logits.float(), -1).numpy().astype(np.float64)
        actions = np.array([rng.choice(num_actions, p=p / p.sum()) for p in probs], np.int64)
    else:
        actions = logits.argmax(-1).numpy().astype(np.int64)
    explore = rng.random(len(actions)) < epsilon
    return np.where(explore, rng.integers(0, num_actions, size=len(actions)), actions)
