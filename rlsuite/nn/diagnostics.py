"""Plasticity diagnostics, logged under `plasticity/` (the GMP paper's mechanistic signatures).

- `parameter_norm`: global L2 norm of all parameters (pruning lowers it).
- `dormant_fraction`: ReDo's dormant neurons (Sokar et al. 2023): a unit's score is its mean |activation|
  over the batch divided by the layer's average score; a unit is dormant when its score <= tau
  (0.1). For conv layers a unit is a channel (activations averaged over space too). Every layer's
  units count once (`relu_layers`): a layer's units are the channels / features one ReLU call
  outputs, except a residual stream, whose channels are one layer however many ReLUs read it.
- `srank`: effective feature rank (Kumar et al. 2021): the smallest k whose top-k singular values
  hold 1 - delta (0.01) of the singular value sum of the feature matrix.

They are computed on a dedicated diagnostics batch: the caller passes many states (the DQN agent
samples >= 1024 from its replay buffer) at each diagnostics interval, one extra forward pass. A
training batch is too small: srank can never exceed the number of rows, so 32 states cap it at 32,
and dormancy scores of a few states are noisy.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from rlsuite.nn.conv import STREAM_ATTR


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
def relu_layers(network: nn.Module, forward: Callable[[Any], Any], obs: Any) -> tuple[list[torch.Tensor], Any]:
    """Run `forward(obs)` and return (one ReLU output per layer of units, forward's output).

    Every ``nn.ReLU`` module in `network` is hooked. What counts as one layer:
    - each ReLU call, in forward order: a module reused for several layers (``self.relu`` called
      twice) carries no unit identity, so each call is its own layer;
    - except a call whose input is the same tensor as an earlier ReLU call's input or output:
      those are the same units, counted once (skipped);
    - ReLUs tagged with the same residual stream (`rlsuite.nn.conv.ResidualStream`, the
      Impala encoder's pre-block ReLUs and its final ReLU) read the same C channels at several
      depths: they form one layer, their outputs concatenated along the batch axis (so a unit's
      score is its mean |activation| over the batch and every place the stream is read).
    Shapes: each returned tensor is (N, C, H, W) or (N, D), N a multiple of the batch size.
    """
    layers: list[list[torch.Tensor]] = []
    stream_layer: dict[int, int] = {}  # id(stream tag) -> index in layers
    seen: list[torch.Tensor] = []  # kept alive so identity checks cannot hit a recycled id

    def record(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        if any(args[0] is t for t in seen):
            return
        seen.extend((args[0], out))
        stream = getattr(module, STREAM_ATTR, None)
        if stream is None:
            layers.append([out])
        elif id(stream) in stream_layer:
            layers[stream_layer[id(stream)]].append(out)
        else:
            stream_layer[id(stream)] = len(layers)
            layers.append([out])

    relus = {id(m): m for m in network.modules() if isinstance(m, nn.ReLU)}
    handles = [m.register_forward_hook(record) for m in relus.values()]
    try:
        result = forward(obs)
    finally:
        for handle in handles:
            handle.remove()
    return [torch.cat(outs) if len(outs) > 1 else outs[0] for outs in layers], result


@torch.no_grad()
def plasticity_report(network: nn.Module, encoder: nn.Module, obs: Any, tau: float = 0.1) -> dict[str, float]:
    """Parameter norm of `network`, dormant fraction over its ReLU layers (each layer's units
    once, see `relu_layers`) and srank of `encoder`'s output, all on `obs`.

    `obs` should be a dedicated diagnostics batch, not a training batch: srank is at most its number
    of rows (the DQN agent passes >= 1024 states sampled from the replay buffer). Only the ReLUs
    that `encoder` runs are seen (a Q-head after the encoder has none).
    """
    activations, features = relu_layers(network, encoder, obs)
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
    layer this is its angular step, eta_eff ~ eta / ||W|| (Lyle et al. 2024, NaP). Norm growth shows up
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
