"""The knowledge-retention losses of Wołczyk et al. (ICML 2024) as pure functions, one per equation
(their §"knowledge retention"), and the diagonal Fisher that EWC weighs with.

Every KL here is the forward KL from the teacher (the frozen pre-trained policy pi*) to the
student (the policy being fine-tuned), KL(pi* || pi), as the paper's code computes it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from rlsuite.nn.temperature import adaptive_logits


def kl_teacher_student(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Mean over states of KL(pi* || pi) = sum_a pi*(a|s) (log pi*(a|s) - log pi(a|s)).

    Both (B, A) logits; the teacher's are treated as constants. Returns a 0-d tensor, in nats;
    0 exactly when the two policies agree on every state."""
    teacher = F.log_softmax(teacher_logits.detach(), dim=-1)
    student = F.log_softmax(student_logits, dim=-1)
    return (teacher.exp() * (teacher - student)).sum(-1).mean()


def behaviour_cloning_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """BC: E_{s ~ B_BC} KL(pi*(s) || pi(s)), logits on states of a fixed buffer the pre-trained
    policy collected on its own (FAR) task."""
    return kl_teacher_student(teacher_logits, student_logits)


def kickstarting_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Kickstarting (Schmitt et al. 2018): E_{s ~ B_theta} KL(pi*(s) || pi(s)), logits on the
    states of the online batch (visited by the current policy)."""
    return kl_teacher_student(teacher_logits, student_logits)


def ewc_penalty(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor],
                fisher: Sequence[torch.Tensor]) -> torch.Tensor:
    """EWC (Kirkpatrick et al. 2017): sum_i F_i (theta*_i - theta_i)^2 over the given parameters,
    `anchors` = theta* (the pre-trained weights), `fisher` = the diagonal Fisher, same shapes."""
    total = params[0].new_zeros(())
    for theta, anchor, weight in zip(params, anchors, fisher):
        total = total + (weight * (anchor - theta).pow(2)).sum()
    return total


def distillation_logits(q_values: torch.Tensor, temperature: float, rule: str = "fixed") -> torch.Tensor:
    """A Q-network read as a policy for distillation (Rusu et al. 2016): the logits Q / tau of
    softmax(Q / tau), (B, A) -> (B, A). `rule` (finetune.temperature_rule): 'fixed' as said;
    'adaptive' multiplies each row by the entropy-chosen inverse temperature beta >= 1 of
    softmax(Q / tau) (Veličković et al., arXiv 2410.01104; rlsuite.nn.temperature), in fp32: meant
    for the teacher's target only. ValueError on another rule."""
    logits = q_values / temperature
    if rule == "fixed":
        return logits
    if rule == "adaptive":
        return adaptive_logits(logits, dim=-1)
    raise ValueError(f"unknown distillation temperature rule {rule!r} (fixed or adaptive)")


def diagonal_fisher(logits_fn: Callable[[torch.Tensor], torch.Tensor], params: Sequence[torch.Tensor],
                    states: torch.Tensor | dict, rng: np.random.Generator, actions: str = "sampled",
                    clip_below: float = 0.0) -> list[torch.Tensor]:
    """The diagonal Fisher of the policy softmax(logits_fn(s)) w.r.t. `params`, averaged over states:

        F_i = E_s E_{a ~ pi(.|s)} [(d log pi(a|s) / d theta_i)^2]

    `actions='sampled'`: one action per state drawn from pi on `rng` (the true Fisher's Monte
    Carlo estimate; the empirical Fisher would use logged actions instead); 'expected': the sum over
    every action weighted by pi(a|s) (exact, |A| gradients per state). `states`: (N, ...) tensor or
    dict of tensors. Entries below `clip_below` are raised to it. One backward pass per (state,
    action): per-sample gradients cannot be batched through a sum of squares.
    """
    fisher = [torch.zeros_like(p) for p in params]
    n = len(next(iter(states.values()))) if isinstance(states, dict) else len(states)
    for i in range(n):
        state = {k: v[i:i + 1] for k, v in states.items()} if isinstance(states, dict) else states[i:i + 1]
        log_probs = F.log_softmax(logits_fn(state), dim=-1)[0]
        probs = log_probs.detach().exp()
        if actions == "expected":
            chosen = [(a, float(probs[a])) for a in range(len(probs))]
        else:
            p = probs.cpu().double().numpy()
            chosen = [(int(rng.choice(len(p), p=p / p.sum())), 1.0)]
        for k, (a, weight) in enumerate(chosen):
            grads = torch.autograd.grad(log_probs[a], params, retain_graph=k < len(chosen) - 1, allow_unused=True)
            for acc, g in zip(fisher, grads):
                if g is not None:
                    acc.add_(g.pow(2), alpha=weight / n)
    return [f.clamp_min(clip_below) if clip_below > 0 else f for f in fisher]
