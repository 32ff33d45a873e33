"""Self-guided training (SGT) of a structured linear map (Wei, Moalla, Pascanu, Gulcehre, "Building
on Efficient Foundations: Effectively Training LLMs with Structured Feedforward Layers", arXiv
2406.16450, section on self-guided training; official code CLAIRE-Labo/StructuredFFN, reference only).

A structured layer S (rlsuite.nn.structured) gets a dense guide W_g (d_out x d_in), initialised to
S's own product, so the function is unchanged at the start; during the guided phase

    y = alpha W_g x + (1 - alpha) S(x) + b        (b: S's bias, added once)

with alpha going from 1 to 0 over the first G = round(ratio x total updates) updates:

    cosine: alpha(u) = (1 + cos(pi u / G)) / 2,    linear: alpha(u) = 1 - u / G,    alpha(u >= G) = 0.

The dense path learns the features while the deep-linear factors, with their extra saddle points,
slowly take over. Once alpha is 0 the guide is skipped entirely (the output is exactly S(x) + b);
it stays a parameter, so a checkpoint has one shape through the whole run, and it gets no gradient
(so AdamW, which skips parameters without one, leaves it as it was). alpha is a buffer of the
module: checkpoints carry it, so evaluation and a resumed run use the alpha of the last update.

Departure from the official code: it can also skip the guide at random with probability 1 - alpha
per step (`reduce_flop`) to save FLOPs; here the guide is always used while alpha > 0 (no extra
random stream, and the equation above holds at every step).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SCHEDULES = ("cosine", "linear")


def guide_alpha(update: int, guided_updates: int, schedule: str = "cosine") -> float:
    """alpha of update `update` (0-based) for a guided phase of `guided_updates` updates (module
    docstring); 0 from `guided_updates` on, and always 0 when it is 0. ValueError for an unknown schedule."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if update >= guided_updates:
        return 0.0
    progress = update / guided_updates
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


class SelfGuided(nn.Module):
    """A structured layer (`structured`, any rlsuite.nn.structured.StructuredLinear) with its dense
    guide `guide` (d_out, d_in) and the mixing weight `alpha` (a 0-d buffer, 1 at construction).
    x (..., d_in) -> (..., d_out)."""

    decayed_weights: tuple[str, ...] = ("guide",)
    """Parameters AdamW decays as it decays a dense layer's weight (rlsuite.agents.dt)."""

    def __init__(self, structured: nn.Module) -> None:
        super().__init__()
        self.structured = structured
        self.in_features, self.out_features = structured.in_features, structured.out_features
        self.guide = nn.Parameter(structured.dense_matrix().detach().clone())
        self.register_buffer("alpha", torch.ones((), dtype=self.guide.dtype, device=self.guide.device))
        self.guided = True  # alpha > 0 on the Python side: skipping the guide then needs no device sync
        self.register_load_state_dict_post_hook(_mirror_alpha)

    def set_alpha(self, alpha: float) -> None:
        """Set the mixing weight (0 <= alpha <= 1) for the next forwards."""
        self.alpha.fill_(float(alpha))
        self.guided = float(alpha) > 0

    @torch.no_grad()
    def reset_guide(self) -> None:
        """Restart guidance from the structured map's current product (alpha 1): for a run that
        starts from another run's weights, whose guide may have been left behind long ago."""
        self.guide.copy_(self.structured.dense_matrix())
        self.set_alpha(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.structured
        y = s.product(x)
        if self.guided:
            y = self.alpha * F.linear(x, self.guide) + (1 - self.alpha) * y
        return y if s.bias is None else y + s.bias

    def dense_matrix(self) -> torch.Tensor:
        """The current d_out x d_in matrix of the whole layer (alpha W_g + (1 - alpha) W_S)."""
        w = self.structured.dense_matrix()
        return self.alpha * self.guide + (1 - self.alpha) * w if self.guided else w


def _mirror_alpha(module: SelfGuided, _incompatible: Any) -> None:
    module.guided = bool(module.alpha.item() > 0)


def guided_layers(model: nn.Module) -> list[SelfGuided]:
    """Every self-guided layer of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, SelfGuided)]
