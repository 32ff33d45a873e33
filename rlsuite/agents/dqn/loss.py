"""What a DQN update minimises: the TD target (vanilla, or double DQN's, van Hasselt et al. 2016)
and the mean element-wise TD loss (MSE or Huber), importance-weighted under prioritized replay."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F


def td_targets(reward: torch.Tensor, discount: torch.Tensor, next_obs: Any, target_net: Callable[[Any], torch.Tensor],
               online_net: Callable[[Any], torch.Tensor], double: bool) -> torch.Tensor:
    """reward + discount * the bootstrap value of `next_obs`: max_a Q_target(s', a), or with `double`
    Q_target(s', argmax_a Q_online(s', a)). `reward` and `discount` are a replay batch's n-step return
    and gamma^n (0 where the episode terminated); the nets are the agent's forward calls."""
    next_q = target_net(next_obs)
    if double:
        best = online_net(next_obs).argmax(dim=1, keepdim=True)
        bootstrap = next_q.gather(1, best).squeeze(1)
    else:
        bootstrap = next_q.max(dim=1).values
    return reward + discount * bootstrap


def td_loss(q_taken: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, kind: str) -> torch.Tensor:
    """Mean element-wise TD loss, importance-weighted when `weights` are given (PER)."""
    if kind == "mse":
        elementwise = (q_taken - target).pow(2)
    else:
        elementwise = F.smooth_l1_loss(q_taken, target, reduction="none")
    return (elementwise if weights is None else weights * elementwise).mean()
