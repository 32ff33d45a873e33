"""Gradual magnitude pruning (Zhu & Gupta 2017) as used by Obando-Ceron et al. (ICML 2024), with
JaxPruner's semantics (Lee et al. 2023, `MagnitudePruning` + `PolynomialSchedule`):

- per-layer final sparsities s_l^F are solved ONCE, at the final overall sparsity s^F, by `uniform`
  or `erk` (Erdős–Rényi-Kernel, JaxPruner's `get_sparsities_erdos_renyi` with kernel dims);
- each layer follows the cubic schedule (Zhu & Gupta Eq. 1) towards its own final target:
  s_l(t) = s_l^F (1 - (1 - p)^3), with p the progress through the pruning window, counted in
  **gradient updates** from `start` to `end` (fractions of the run's updates, default 0.2 / 0.8).
  Since sum_l s_l^F n_l = s^F sum_l n_l, the overall sparsity is s^F (1 - (1 - p)^3) at every step;
- every `update_freq` updates inside that window the masks are recomputed: per layer, keep the
  largest |weight x old mask| (ties broken by flat index), so a pruned weight never comes back;
- masks multiply the weights after *every* optimizer step (a post-step hook), so pruned weights
  are exactly zero at every forward pass; gradients and Adam moments are left dense by default, as
  in JaxPruner, with `mask_gradients` to mask both;
- every conv and linear kernel is prunable (first conv and Q-head included), biases never;
- frozen kernels (requires_grad False: `finetune.freeze`, a critic warm-up) are skipped: their masks
  are neither recomputed nor applied while frozen, so they stay bitwise as they are (a kernel frozen
  for the whole run stays dense, and the achieved overall sparsity, `report`, falls short of
  gmp.sparsity by its share); a kernel unfrozen later catches up at the next mask update.

Departure (documented): JaxPruner recomputes a mask from the weights *before* that iteration's
Adam update; this hook runs after the step, so it ranks the post-update weights (times the old
mask, so the update cannot revive what was pruned).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rlsuite.config.fields import choice, ranged, unchecked
from rlsuite.errors import UserError


@dataclass
class GMPConfig:
    """Gradual magnitude pruning (off while sparsity is 0)."""

    sparsity: float = ranged(0.0, ge=0, lt=1)
    """Final sparsity s_F over all prunable weights (the paper: 0.95); 0 turns pruning off."""
    start: float = ranged(0.2, ge=0, le=1)
    """Pruning starts at this fraction of the run's gradient updates (the paper: 20%)."""
    end: float = ranged(0.8, ge=0, le=1)
    """Pruning reaches s_F at this fraction of the run's gradient updates (the paper: 80%)."""
    update_freq: int = ranged(1000, ge=1)
    """Gradient updates between mask updates (JaxPruner's Dopamine config: 1000)."""
    distribution: str = choice("erk", "erk", "uniform")
    """Per-layer targets: 'erk' (Erdős–Rényi-Kernel; the Q-head usually stays dense) or 'uniform'."""
    exclude: tuple[str, ...] = unchecked((), "any fnmatch patterns")
    """Parameter-name patterns (fnmatch, e.g. 'encoder.convs.0.*') never pruned."""
    mask_gradients: bool = False
    """Also zero the gradients and Adam moments of pruned weights (the reference code does not)."""


def gmp_sparsity_at(progress: float, final: float) -> float:
    """Paper Eq. 1: s = s_F (1 - (1 - p)^3), with p the progress through the pruning window."""
    p = min(1.0, max(0.0, progress))
    return final * (1.0 - (1.0 - p) ** 3)


def prunable_parameters(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
    """Every conv and linear kernel (ndim > 1) not matched by an exclude pattern; never biases."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            full = f"{name}.weight" if name else "weight"
            if not any(fnmatch.fnmatch(full, pattern) for pattern in exclude):
                found[full] = module.weight
    return found


def erk_densities(shapes: list[tuple[int, ...]], sparsity: float) -> list[float]:
    """Per-layer densities with density_l ∝ sum(shape_l) / prod(shape_l), scaled so the kept
    weights total (1 - sparsity) of all; layers that would exceed density 1 are made dense and
    the scale is solved again over the rest (JaxPruner's ERK, power 1)."""
    sizes = [math.prod(s) for s in shapes]
    budget = (1.0 - sparsity) * sum(sizes)
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        remaining = budget - sum(sizes[i] for i in dense)
        scale = remaining / max(sum(sum(shapes[i]) for i in free), 1e-12)
        overflow = [i for i in free if scale * sum(shapes[i]) / sizes[i] > 1.0]
        if not overflow:
            break
        dense.update(overflow)
    return [1.0 if i in dense else scale * sum(shapes[i]) / sizes[i] for i in range(len(shapes))]


def layer_sparsities(shapes: list[tuple[int, ...]], sparsity: float, distribution: str) -> list[float]:
    """Per-layer sparsities whose weighted mean is `sparsity` (the final targets s_l^F)."""
    if distribution == "uniform":
        return [sparsity] * len(shapes)
    if distribution == "erk":
        return [1.0 - d for d in erk_densities(shapes, sparsity)]
    raise UserError(f"gmp.distribution must be 'erk' or 'uniform', got {distribution!r}")


def magnitude_mask(weight: torch.Tensor, sparsity: float, old_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the k = max(1, round(n (1 - sparsity))) largest |w|; ties go to the lower flat index.

    With `old_mask`, weights outside it score below every weight inside it (JaxPruner ranks the
    masked weights, where pruned ones are 0): as long as k <= the weights alive, none revives.
    """
    n = weight.numel()
    keep = max(1, round(n * (1.0 - sparsity)))
    scores = weight.detach().abs()
    if old_mask is not None:
        scores = torch.where(old_mask, scores, torch.full_like(scores, -1.0))
    order = torch.sort(scores.flatten(), descending=True, stable=True).indices
    mask = torch.zeros(n, dtype=torch.bool, device=weight.device)
    mask[order[:keep]] = True
    return mask.view_as(weight)


class MagnitudePruner:
    """The GMP post-step hook: call it after every optimizer step (`hook(agent)`)."""

    def __init__(self, cfg: GMPConfig, model: nn.Module, total_updates: int,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        if not 0.0 <= cfg.sparsity < 1.0:
            raise UserError(f"gmp.sparsity must be in [0, 1), got {cfg.sparsity}")
        if not 0.0 <= cfg.start <= cfg.end <= 1.0:
            raise UserError(f"gmp.start and gmp.end must satisfy 0 <= start <= end <= 1, got {cfg.start}, {cfg.end}")
        self.cfg = cfg
        self.params = prunable_parameters(model, cfg.exclude)
        if not self.params:
            raise UserError("gmp: no prunable conv/linear weights left after gmp.exclude")
        self.optimizer = optimizer
        self.start_update = int(round(cfg.start * total_updates))
        self.end_update = int(round(cfg.end * total_updates))
        self.count = 0
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in self.params.items()}
        shapes = [tuple(p.shape) for p in self.params.values()]
        # Solved once at s^F (JaxPruner's target_sparsities); the schedule scales each of them.
        self.final_sparsities = dict(zip(self.params, layer_sparsities(shapes, cfg.sparsity, cfg.distribution)))
        self.current_sparsity = 0.0
        if cfg.mask_gradients:
            for name, param in self.params.items():
                param.register_hook(lambda grad, name=name: grad * self.masks[name])

    def target_at(self, update: int) -> float:
        """Overall target sparsity after `update` gradient updates (library's +1 offset)."""
        if update < self.start_update:
            return 0.0
        window = self.end_update - self.start_update
        if window <= 0:  # start == end: one-shot pruning
            return self.cfg.sparsity
        return gmp_sparsity_at((update + 1 - self.start_update) / window, self.cfg.sparsity)

    def is_mask_update(self, update: int) -> bool:
        if self.end_update <= self.start_update:  # one-shot pruning at the start update
            return update == max(1, self.start_update)
        return update % self.cfg.update_freq == 0 and self.start_update <= update <= self.end_update

    def planned_final_sparsity(self) -> float:
        """The overall sparsity the last mask update of this run's window will set: s^F when a mask
        update falls on the window's end, less when update_freq is coarse for the run's length
        (0 when no mask update falls inside the window at all)."""
        if self.end_update <= self.start_update:
            return self.cfg.sparsity if self.end_update >= 1 else 0.0
        last = self.end_update - self.end_update % self.cfg.update_freq
        return self.target_at(last) if last >= max(1, self.start_update) else 0.0

    @torch.no_grad()
    def __call__(self, _agent: Any = None) -> None:
        self.count += 1
        if self.is_mask_update(self.count):
            self.update_masks(self.target_at(self.count))
        self.apply()

    def layer_targets(self, sparsity: float) -> dict[str, float]:
        """Per-layer targets when the overall target is `sparsity` = s^F (1 - (1 - p)^3):
        s_l^F scaled by the same schedule factor (1 - (1 - p)^3) = sparsity / s^F."""
        factor = sparsity / self.cfg.sparsity if self.cfg.sparsity > 0 else 0.0
        return {name: final * factor for name, final in self.final_sparsities.items()}

    @torch.no_grad()
    def update_masks(self, sparsity: float) -> None:
        """Recompute every mask for the overall target `sparsity` (see `layer_targets`)."""
        for name, target in self.layer_targets(sparsity).items():
            if not self.params[name].requires_grad:
                continue  # frozen (finetune.freeze): its mask stays as it was, dense if never pruned
            # Ranking |w x old mask| keeps pruned weights out even if Adam moved them off zero.
            self.masks[name] = magnitude_mask(self.params[name], target, self.masks[name])
        self.current_sparsity = sparsity

    @torch.no_grad()
    def apply(self) -> None:
        for name, param in self.params.items():
            if not param.requires_grad:
                continue  # frozen weights are left exactly as they are
            param.mul_(self.masks[name])
            if self.cfg.mask_gradients and self.optimizer is not None:
                for moment in self.optimizer.state.get(param, {}).values():
                    # Adam's moments (param-shaped) and Adam+CM's buffered momenta (C, *param shape)
                    stacked = moment.dim() == param.dim() + 1 if torch.is_tensor(moment) else False
                    if torch.is_tensor(moment) and moment.shape[stacked:] == param.shape:
                        moment.mul_(self.masks[name].to(moment.dtype))

    def report(self) -> dict[str, float]:
        """Achieved sparsity, overall and per layer, and the number of weights alive."""
        alive = {name: int(mask.sum()) for name, mask in self.masks.items()}
        total = sum(m.numel() for m in self.masks.values())
        out = {"sparsity/overall": 1.0 - sum(alive.values()) / total, "sparsity/weights_alive": float(sum(alive.values())),
               "sparsity/target": self.current_sparsity}
        for name, mask in self.masks.items():
            out[f"sparsity/{name}"] = 1.0 - alive[name] / mask.numel()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "masks": {k: v.clone() for k, v in self.masks.items()},
                "current_sparsity": self.current_sparsity, "start_update": self.start_update,
                "end_update": self.end_update}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.current_sparsity = state["count"], state["current_sparsity"]
        self.start_update, self.end_update = state["start_update"], state["end_update"]
        for name, mask in state["masks"].items():
            self.masks[name].copy_(mask)


def model_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights in every prunable kernel (for eval of a saved agent)."""
    params = prunable_parameters(model)
    zeros = sum(int((p == 0).sum()) for p in params.values())
    total = sum(p.numel() for p in params.values())
    return {"sparsity": zeros / max(total, 1), "weights_alive": float(total - zeros)}
