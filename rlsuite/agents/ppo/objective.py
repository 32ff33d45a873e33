"""What PPO optimises on a rollout: GAE's advantages and returns (Schulman et al. 2016), the
clipped surrogate and the value loss, combined into PPO's loss with CleanRL's metrics; the learning
rate of a rollout's updates; and the explained variance logged after them."""
from __future__ import annotations

import math
from typing import Any

import torch

from rlsuite.nn.schedules import lr_factor


def gae(rewards: torch.Tensor, values: torch.Tensor, ends: torch.Tensor, next_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) over a rollout (steps, envs).

    `ends[t]`: the episode ended at step t, so nothing after it is bootstrapped (a truncated
    episode's bootstrap gamma V(final obs) is already in its reward). `next_value`: V of the
    observation after the last step. Returns (advantages, returns = advantages + values).
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        following = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        alive = 1.0 - ends[t].to(rewards.dtype)
        delta = rewards[t] + gamma * following * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_surrogate(advantages: torch.Tensor, ratio: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's policy loss: mean of max(-A r, -A clip(r, 1 - eps, 1 + eps))."""
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()


def value_loss(new: torch.Tensor, old: torch.Tensor, returns: torch.Tensor, clip: float, clipped: bool) -> torch.Tensor:
    """0.5 mean (V - R)^2, or with value clipping 0.5 mean max((V - R)^2, (V_old + clip(V - V_old) - R)^2)."""
    unclipped = (new - returns).pow(2)
    if not clipped:
        return 0.5 * unclipped.mean()
    moved = old + (new - old).clamp(-clip, clip)
    return 0.5 * torch.max(unclipped, (moved - returns).pow(2)).mean()


def ppo_objective(c: Any, logits: torch.Tensor, new_value: torch.Tensor, new_value_int: torch.Tensor | None,
                  mb: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """PPO's loss on one minibatch from the network's outputs on it, and CleanRL's metrics:
    policy_loss - ent_coef entropy + vf_coef value_loss (the intrinsic value's loss added to the
    extrinsic one with RND), approx_kl both ways (old: mean(-log r); mean((r - 1) - log r)) and
    the clipped fraction."""
    log_probs = torch.log_softmax(logits, dim=1)
    logratio = log_probs.gather(1, mb["actions"].view(-1, 1)).squeeze(1) - mb["logprobs"]
    ratio = logratio.exp()
    entropy = -(log_probs.exp() * log_probs).sum(1).mean()
    adv = mb["advantages"]
    if c.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = clipped_surrogate(adv, ratio, c.clip_coef)
    v_loss = value_loss(new_value, mb["values"], mb["returns"], c.clip_coef, c.clip_vloss)
    if new_value_int is not None:
        v_loss = v_loss + value_loss(new_value_int, mb["values_int"], mb["returns_int"], c.clip_coef, c.clip_vloss)
    with torch.no_grad():
        metrics = {"losses/policy_loss": pg_loss.detach(), "losses/value_loss": v_loss.detach(),
                   "losses/entropy": entropy.detach(), "losses/old_approx_kl": (-logratio).mean(),
                   "losses/approx_kl": ((ratio - 1) - logratio).mean(),
                   "clipfrac": ((ratio - 1.0).abs() > c.clip_coef).float().mean().item()}
    return pg_loss - c.ent_coef * entropy + c.vf_coef * v_loss, metrics


def learning_rate(c: Any, rollouts_done: int, total_rollouts: int, warmup_rollouts: int) -> float:
    """Adam's lr for the updates of rollout `rollouts_done` (0-based): c.lr annealed linearly to 0
    (c.anneal_lr; CleanRL's 1 - (iteration - 1) / N) over the rollouts after the first
    `warmup_rollouts`, which keep c.lr (a critic warm-up: the anneal starts with the actor)."""
    left = total_rollouts - warmup_rollouts
    if not c.anneal_lr or left <= 0 or rollouts_done < warmup_rollouts:
        return c.lr
    return c.lr * lr_factor((rollouts_done - warmup_rollouts) / left, "linear", 0.0)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target) (nan when the target is constant)."""
    var = float(target.var(unbiased=False))
    return math.nan if var == 0 else 1.0 - float((target - predicted).var(unbiased=False)) / var
