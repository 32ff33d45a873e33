"""The optimizer every agent trains with: `agent.optimizer` (adam | adam_cm) and the `agent.cm.*` keys.

'adam' is what each agent always used (torch Adam for DQN and PPO, AdamW for the DT and BC, with their
own epsilons, betas and weight decays). 'adam_cm' is Adam with critical momenta (rlsuite.nn.adam_cm;
Malviya et al., "Promoting Exploration in Memory-Augmented Adam using Critical Momenta", arXiv 2307.09638,
TMLR 2024) with the same learning rate, betas, epsilon, parameter groups and decoupled weight decay, plus a
buffer of the C highest-priority past momenta. Its `critical_test` draws come from the run's `optimizer`
stream (rlsuite.run.seeding), whose state travels in the optimizer's own state_dict, so a resumed run
continues exactly.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from rlsuite.config.fields import choice, ranged
from rlsuite.nn.adam_cm import AdamCM
from rlsuite.run import seeding

OPTIMIZERS = ("adam", "adam_cm")
"""The values of `agent.optimizer`."""

BUFFER_DTYPES = {"param": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class CMConfig:
    """Adam with critical momenta (used when agent.optimizer is 'adam_cm'; defaults: the official
    chandar-lab/CMOptimizer `Adam_CM`)."""

    top_c: int = ranged(5, ge=0, le=1000)
    """Buffer capacity C: how many past momenta are kept (the paper's grid: 5, 10, 20; 0 turns the buffer off, giving Adam)."""
    decay: float = ranged(0.7, ge=0, le=1)
    """Priority decay lambda: every stored momentum's key (its gradient norm) is multiplied by this each step (official: 0.7; README: 0.7 or 0.99)."""
    synced: bool = True
    """One priority and one keep/drop decision per parameter group (the sum of the tensors' gradient L2 norms), as the official default; false: one per tensor."""
    critical_test: float = ranged(0.0, ge=0, le=1)
    """Probability of overwriting a full buffer's lowest-priority momentum whatever the new priority (a FIFO-like refresh; official default 0)."""
    buffer_dtype: str = choice("param", *BUFFER_DTYPES)
    """Storage dtype of the buffered momenta: 'param' (the parameter's), 'fp32', 'bf16' or 'fp16' (C copies of the network: a lower precision halves that)."""


def make_optimizer(kind: str, cm: CMConfig, seed: int, params: Iterable[Any], adam: type[torch.optim.Optimizer],
                   **kwargs: Any) -> torch.optim.Optimizer:
    """The agent's optimizer over `params` (tensors or parameter-group dicts).

    Args:
        kind: 'adam' builds `adam(params, **kwargs)` (the agent's own torch.optim.Adam or AdamW);
            'adam_cm' builds AdamCM with the same lr, betas, eps and weight_decay (decoupled, per group).
        cm: the agent's `cm.*` keys.
        seed: the run's seed; the critical_test draws use its `optimizer` stream.
        adam: the torch class the agent uses when kind is 'adam'.
        kwargs: lr, eps, betas, weight_decay, and torch-only options (`fused`) that AdamCM ignores.

    Raises:
        ValueError: an unknown `kind` (the config's declared choice rules it out before a run starts).
    """
    if kind == "adam":
        return adam(params, **kwargs)
    if kind != "adam_cm":
        raise ValueError(f"agent.optimizer must be one of {', '.join(OPTIMIZERS)}, got {kind!r}")
    if adam is torch.optim.Adam and kwargs.get("weight_decay", 0.0):
        # Adam's decay is an L2 term in the gradient; AdamCM decays the weights (AdamW style).
        raise ValueError("adam_cm decays weights the AdamW way; this agent's Adam uses L2 weight decay")
    shared = {k: kwargs[k] for k in ("lr", "betas", "eps", "weight_decay") if k in kwargs}
    return AdamCM(params, **shared, top_c=cm.top_c, decay=cm.decay, synced=cm.synced,
                  critical_test=cm.critical_test, buffer_dtype=BUFFER_DTYPES[cm.buffer_dtype],
                  generator=seeding.torch_generator(seed, "optimizer"))


def optimizer_report(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Adam+CM's buffer diagnostics for TensorBoard (`cm/accepted`, `cm/rejected`: insertions so far;
    `cm/buffer_size`: mean filled slots; `cm/key_mean`: mean stored priority, gradient-norm units);
    empty for any other optimizer."""
    return optimizer.stats() if isinstance(optimizer, AdamCM) else {}
