"""Plasticity diagnostics, logged under `plasticity/` (the GMP paper's mechanistic signatures).

- `parameter_norm`: global L2 norm of all parameters (pruning lowers it).
- `dormant_fraction`: ReDo's dormant neurons (Sokar et al. 2023): a unit's score is its mean |activation|
  over the batch divided by the layer's average score; a unit is dormant when its score <= tau
  (0.1). For conv layers a unit is a channel (activations averaged over space too).
- `srank`: effective feature rank (Kumar et al. 2021): the smallest k whose top-k singular values
  hold 1 - delta (0.01) of the singular value sum of the feature matrix.

They are computed on one batch the agent already has, every log interval: one extra forward pass.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def parameter_norm(model: nn.Module) -> float:
    return float(torch.sqrt(sum(p.detach().pow(2).sum() for p in model.parameters())))


def unit_scores(activation: torch.Tensor) -> torch.Tensor:
    """Mean |activation| per unit (channel for 4-D conv maps), normalised by the layer mean."""
    act = activation.detach().abs()
    per_unit = act.mean(dim=(0, 2, 3)) if act.dim() == 4 else act.reshape(act.shape[0], -1).mean(dim=0)
    return per_unit / (per_unit.mean() + 1e-9)


def dormant_fraction(activations: list[torch.Tensor], tau: float = 0.1) -> float:
    """Fraction of all units, over every ReLU layer, whose score is <= tau."""
    dormant = total = 0
    for act in activations:
        scores = unit_scores(act)
        dormant += int((scores <= tau).sum())
        total += scores.numel()
    return dormant / max(total, 1)


def srank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Effective rank of a (batch, dim) feature matrix."""
    singular = torch.linalg.svdvals(features.detach().float().reshape(features.shape[0], -1))
    cumulative = torch.cumsum(singular, 0) / (singular.sum() + 1e-12)
    return int((cumulative < 1.0 - delta).sum()) + 1


@torch.no_grad()
def plasticity_report(network: nn.Module, encoder: nn.Module, obs: Any, tau: float = 0.1) -> dict[str, float]:
    """Parameter norm, dormant fraction over every ReLU, srank of the encoder output, on one batch."""
    activations: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: activations.append(out))
               for m in network.modules() if isinstance(m, nn.ReLU)]
    try:
        features = encoder(obs)
    finally:
        for handle in handles:
            handle.remove()
    return {"plasticity/param_norm": parameter_norm(network),
            "plasticity/dormant_fraction": dormant_fraction(activations, tau),
            "plasticity/srank": float(srank(features))}


def layers_with_weights(model: nn.Module) -> dict[str, nn.Module]:
    """Every module that owns a `weight` parameter (convs, linears, norms, embeddings), by name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), nn.Parameter)}


class UpdateProbe:
    """Per-layer weight norm, gradient norm and effective learning rate of one gradient update.

    Effective learning rate under Adam: Adam's step size barely depends on the gradient's scale,
    so the quantity that tracks plasticity is how far an update turns each weight tensor. We
    measure it directly as the relative update size ||W_after - W_before|| / ||W_before|| over one
    update (after the post-step constraints, so NaP's projection is included): for a scale-invariant
    layer this is its angular step, eta_eff ~ eta / ||W|| (GMP_NAP.md §2.2). Norm growth shows up
    as a falling effective LR.

    Cheap by construction: `arm()` (once per diagnostics interval) copies the weights; the next
    `after_update()` measures and disarms; every other update pays one boolean test.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = layers_with_weights(model)
        self.armed = False
        self._before: list[torch.Tensor] = []
        self.last: dict[str, float] = {}

    @torch.no_grad()
    def arm(self) -> None:
        self._before = [m.weight.detach().clone() for m in self.layers.values()]
        self.armed = True

    @torch.no_grad()
    def after_update(self) -> None:
        self.armed = False
        out: dict[str, float] = {}
        for (name, module), before in zip(self.layers.items(), self._before):
            weight, grad = module.weight.detach(), module.weight.grad
            norm_before = float(before.norm())
            out[f"plasticity/weight_norm/{name}"] = float(weight.norm())
            out[f"plasticity/effective_lr/{name}"] = float((weight - before).norm()) / max(norm_before, 1e-12)
            if grad is not None:
                out[f"plasticity/grad_norm/{name}"] = float(grad.norm())
        grads = [m.weight.grad for m in self.layers.values() if m.weight.grad is not None]
        if grads:
            out["plasticity/grad_norm"] = float(torch.stack(torch._foreach_norm(grads)).norm())
        self._before = []
        self.last = out
