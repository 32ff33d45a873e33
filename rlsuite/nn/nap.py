"""Normalize-and-Project (Lyle et al., 2024): keep a network's effective learning rate constant.

The method follows Lyle, Zheng, Khetarpal, Martens, van Hasselt, Pascanu and Dabney,
"Normalization and effective learning rates in reinforcement learning" (NeurIPS 2024). Two parts,
each a switch:

1. **Normalize** (`insert_norms`): a normalization layer in front of every ``nn.ReLU`` of a
   network, found by rewriting the module tree after one dry run. Each ReLU becomes
   ``Sequential(norm, ReLU)``; a conv or linear layer whose output goes *straight* into a new norm
   loses its bias (the norm's offset makes it redundant, and a free bias would break the scale
   invariance the projection relies on).
   - Vectors ``(B, D)``: ``LayerNorm(D)`` or ``RMSNorm(D)`` over the features.
   - Conv maps ``(B, C, H, W)``: normalized over **C, H and W together**, with a per-channel gain
     and offset (``GroupNorm(1, C)``; the RMS variant likewise). Normalizing the whole map makes a
     conv layer's output invariant to one scalar on its kernel, which is exactly the symmetry the
     projection uses; per-channel gains keep the parameter count of BatchNorm-style layers, and
     unlike per-position channel norms it does not rescale empty board cells (MinAtar's planes
     are mostly zeros) up to unit variance.
2. **Project** (`NormProjector`, a post-step hook): after optimizer steps, every conv / linear
   layer's ``[W; b]`` is rescaled to its Frobenius norm at initialisation, and every norm layer's
   ``[gain; offset]`` jointly to its initial norm (sqrt(D) for gain 1, offset 0).
   - The output head and the norm that feeds it are left free by default (`project_head`): the
     head is not followed by a norm, so its scale *is* the Q-value scale, and the last norm's
     gain/offset trade off one-for-one with the head's scale.
   - With that default, a network in which every projected layer feeds a norm computes the same
     function before and after a projection (tested to 1e-5); only the effective learning rate
     changes. In the Impala ResNet the convs that write into the residual stream feed an addition,
     not a norm, so there the projection also fixes the residual stream's scale: that is NaP's
     constant-norm constraint applied to a ResNet, not a function-preserving step.
   - Adam's moments are left untouched (as the third-party implementations do).
   - A layer with a frozen parameter (requires_grad False: `finetune.freeze`, the critic warm-up)
     is not projected while frozen, so frozen weights stay exactly as they are.

With GMP: radii are the *dense* initial norms. Projection multiplies a layer by one scalar, so it
never changes which weights are largest (the masks GMP computes) and keeps pruned weights at zero;
as pruning removes mass, the projection scales the survivors back up to the dense radius. The
agent runs the pruning hook before this one, so the norm after a step is exactly the radius.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from rlsuite.config.fields import choice, ranged
from rlsuite.errors import UserError

NORMS = ("none", "layer", "rms")


@dataclass
class NaPConfig:
    """Normalize-and-Project (Lyle et al. 2024): norm layers before every ReLU, weight projection."""

    norm: str = choice("none", *NORMS)
    """Normalization inserted before every nonlinearity: 'none', 'layer' (LayerNorm) or 'rms' (RMSNorm)."""
    project: bool = False
    """Rescale every layer to its initial norm after optimizer steps (NaP = a norm + this)."""
    project_every: int = ranged(1, ge=1)
    """Gradient updates between projections (1 = after every step)."""
    project_head: bool = False
    """Also project the output head and the norm feeding it (they set the output scale)."""


# --------------------------------------------------------------------------------------------
# normalization layers


class RMSNorm2d(nn.Module):
    """RMS normalization of a (B, C, H, W) map over C, H, W, with a per-channel gain (no offset)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.pow(2).mean(dim=(1, 2, 3), keepdim=True) + self.eps)
        return x * scale * self.weight.view(1, -1, 1, 1)


NORM_TYPES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, RMSNorm2d)


def make_norm(kind: str, shape: torch.Size) -> nn.Module:
    """The norm layer for one activation shape (batch axis first)."""
    if len(shape) == 4:
        return nn.GroupNorm(1, shape[1]) if kind == "layer" else RMSNorm2d(shape[1])
    features = shape[-1]
    return nn.LayerNorm(features) if kind == "layer" else nn.RMSNorm(features, eps=1e-5)


def _relu_inputs(model: nn.Module, example: Any) -> tuple[list[tuple[nn.Module, torch.Tensor]], dict[int, nn.Module]]:
    """One dry run: each ReLU with its input, and which conv/linear produced each tensor.

    Tensors are matched by identity, so every output is kept alive until the end of the run: a
    freed tensor's id can be reused by the next one (a residual sum would then look conv-made).
    """
    relu_inputs: list[tuple[nn.Module, torch.Tensor]] = []
    producers: dict[int, nn.Module] = {}
    alive: list[torch.Tensor] = []
    hooks = []

    def produced(module: nn.Module, _args: Any, out: torch.Tensor) -> None:
        alive.append(out)
        producers[id(out)] = module

    for module in model.modules():
        if isinstance(module, nn.ReLU):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args: relu_inputs.append((m, args[0]))))
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(produced))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return relu_inputs, producers


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise RuntimeError("module not found in its model")  # cannot happen: old came from model.modules()


def insert_norms(model: nn.Module, example: Any, kind: str) -> list[nn.Module]:
    """Put a `kind` norm in front of every ReLU of `model` (see the module docstring).

    `example` is one batch the model accepts; it only fixes shapes. Returns the inserted norms in
    the order the forward pass runs them, so the caller can tell which one feeds the head.
    """
    if kind == "none":
        return []
    relu_inputs, producers = _relu_inputs(model, example)
    if not relu_inputs:
        from rlsuite.errors import UserError

        raise UserError(f"nap.norm={kind} puts norms before ReLUs, and this network has none "
                        "(encoder.activation=tanh?); use agent.encoder.activation=relu")
    norms = []
    for relu, tensor in relu_inputs:
        norm = make_norm(kind, tensor.shape)
        producer = producers.get(id(tensor))
        if producer is not None and producer.bias is not None:
            producer.register_parameter("bias", None)  # was zero at init, so the function is unchanged
        _replace(model, relu, nn.Sequential(norm, relu))
        norms.append(norm)
    return norms


# --------------------------------------------------------------------------------------------
# projection


def _groups(model: nn.Module, exclude: Iterable[nn.Module]) -> dict[str, list[nn.Parameter]]:
    """Parameter groups projected jointly: [W; b] per conv/linear, [gain; offset] per norm."""
    skip = {id(m) for m in exclude}
    groups = {}
    for name, module in model.named_modules():
        if id(module) in skip or not isinstance(module, (nn.Conv2d, nn.Linear) + NORM_TYPES):
            continue
        params = [p for p in (getattr(module, "weight", None), getattr(module, "bias", None))
                  if isinstance(p, nn.Parameter)]
        if params:
            groups[name] = params
    return groups


class NormProjector:
    """Post-step hook: every `every` calls, rescale each group to its initial norm."""

    MIN_NORM = 1e-12  # a layer GMP pruned to nothing stays zero instead of dividing by zero

    def __init__(self, model: nn.Module, exclude: Iterable[nn.Module] = (), every: int = 1) -> None:
        self.groups = _groups(model, exclude)
        if not self.groups:
            raise UserError("nap.project found no conv, linear or norm layer to project")
        self.every = every
        self.calls = 0
        self._params = [p for group in self.groups.values() for p in group]
        # Which group each parameter belongs to, made once: a projection after every update is a
        # handful of fused ops, with no per-group Python loop.
        sizes = torch.tensor([len(group) for group in self.groups.values()], device=self._params[0].device)
        self._group_of = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)
        self._group_list = [g for g, group in enumerate(self.groups.values()) for _ in group]
        self.radii = self._group_norms()

    @torch.no_grad()
    def _group_norms(self) -> torch.Tensor:
        squares = torch.stack(torch._foreach_norm(self._params)).pow(2)
        return squares.new_zeros(len(self.groups)).index_add_(0, self._group_of, squares).sqrt()

    @torch.no_grad()
    def project(self) -> None:
        """Rescale every group to its radius, except a group holding a frozen parameter
        (requires_grad False, e.g. `rlsuite finetune --freeze encoder`): frozen weights stay bitwise."""
        scale = list((self.radii / self._group_norms().clamp_min(self.MIN_NORM))[self._group_of].unbind())
        frozen = {g for g, p in zip(self._group_list, self._params) if not p.requires_grad}
        if frozen:
            keep = [i for i, g in enumerate(self._group_list) if g not in frozen]
            torch._foreach_mul_([self._params[i] for i in keep], [scale[i] for i in keep])
        else:
            torch._foreach_mul_(self._params, scale)

    def __call__(self, _agent: Any = None) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            self.project()

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "nap", "radii": self.radii.clone(), "names": list(self.groups), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "nap" or state["names"] != list(self.groups):
            raise UserError("checkpoint's NaP state does not match this network (was nap.* changed?)")
        self.radii = state["radii"].to(self.radii.device)
        self.calls = state["calls"]
