"""Merging trained networks of one architecture: plain averaging, permutation alignment, CCA alignment.

Method (Horoi, Orozco Camacho, Belilovsky, Wolf, "Harmony in Diversity: Merging Neural Networks with
Canonical Correlation Analysis", ICML 2024, arXiv 2407.05385; official code shoroi/align-n-merge,
read for reference only, nothing copied):

1. *Merge points* are the hidden representations of a chain of Linear / Conv2d layers: the output of
   every hidden activation (ReLU, Tanh), or of a hidden layer read directly by the next layer.
   The network's input and its heads' outputs (Q-values, logits, values) keep their own basis.
2. The reference network A and every other network B_k are run on the same observations; at each
   merge point their activations give a joint covariance (conv maps pooled over batch and space).
3. Each point gets a transform T (rlsuite.trained.alignment): identity (`average`), a permutation
   (`permute`) or the CCA map (`cca`), with x_hat_A = T^T x_B.
4. B's weights are written in A's basis, layer by layer: W' = T_l^T W (T_{l-1}^T)^{-1}, b' = T_l^T b
   (a Linear that reads a flattened conv map applies (T_{l-1}^T)^{-1} to each channel's block of
   positions; a conv applies it over its input channels).
5. The merged network is the mean of A and the aligned B_k, weight 1/N each.

Normalisation layers (NaP's LayerNorm / RMSNorm / GroupNorm(1, C) before the activation): their
gain and offset are transformed with the point's T. That is exact for a permutation (the norm's
statistics are permutation-invariant), and for plain averaging. A general CCA map does not commute
with a per-sample normalisation, so `cca` refuses networks with norms instead of returning a
network whose merge has no meaning.

Supported: chains whose every leaf module is Linear, Conv2d, ReLU, Tanh, Flatten, Flax-style
padding, or one of NaP's norms, each called once, with no functional operation between layers
(so MLP torsos, the Nature and MinAtar CNNs, DQN's plain and dueling heads, PPO's trunks and
heads). Anything else (residual blocks, pooling, LSTM cores, embeddings, attention) is refused
with a UserError naming the module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rlsuite.errors import UserError
from rlsuite.nn.conv import SamePad2d
from rlsuite.nn.nap import NORM_TYPES
from rlsuite.trained.alignment import JointMoments, cca_transform, permutation_transform

METHODS = ("average", "permute", "cca")
DEFAULT_GAMMA = 0.1  # the official match_tensors_cca default; the paper tunes it per setting
WEIGHTED = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.Tanh)
PASSING = (nn.Flatten, SamePad2d, nn.Identity)


@dataclass
class Layer:
    """A Linear / Conv2d layer: the merge point its output is in (None: an output, kept as is), the
    point its input is in (None: the network's input), and, for a Linear reading a flattened conv
    map, the number of spatial positions per channel."""

    name: str
    out_point: str | None
    in_point: str | None
    in_spatial: int = 1


@dataclass
class MergePlan:
    """What `plan_network` found: layers, norms (name -> point) and merge points in forward order."""

    layers: list[Layer] = field(default_factory=list)
    norms: dict[str, str] = field(default_factory=dict)
    points: list[str] = field(default_factory=list)


def _refuse(what: str) -> UserError:
    return UserError(f"merge cannot align this network: {what}; it merges chains of Linear/Conv2d layers with "
                     "ReLU/Tanh activations (MLP and plain CNN torsos, their heads)")


def _calls(network: nn.Module, example: Any) -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    """One dry run: every leaf module's (name, module, input, output), in call order. The tensors
    stay referenced in the list, so their ids are unique for the whole run."""
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = []
    for name, module in network.named_modules():
        if next(module.children(), None) is not None:
            continue
        if not isinstance(module, WEIGHTED + ACTIVATIONS + NORM_TYPES + PASSING):
            raise _refuse(f"it has a {type(module).__name__} ('{name}')")
        if isinstance(module, nn.GroupNorm) and module.num_groups != 1:
            raise _refuse(f"GroupNorm '{name}' has {module.num_groups} groups")
        hooks.append(module.register_forward_hook(
            lambda m, args, out, name=name: calls.append((name, m, args[0] if args else None, out))))
    try:
        with torch.no_grad():
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
    names = [c[0] for c in calls]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _refuse(f"module '{twice[0]}' is called more than once (shared weights)")
    return calls


def plan_network(network: nn.Module, example: Any) -> MergePlan:
    """The merge plan of `network` from one dry run on `example` (a batch of observations).

    Raises UserError for a network that is not a supported chain (see the module docstring).
    """
    calls = _calls(network, example)
    if not isinstance(example, torch.Tensor):
        raise _refuse("its observations are not a single array")
    plan = MergePlan()
    out_point: dict[str, str] = {}
    producer: dict[int, tuple[str, nn.Module, torch.Tensor]] = {}
    for name, module, x, y in calls:  # pass 1: which layer (and norm) feeds each merge point
        source = producer.get(id(x)) if x is not None else None
        if isinstance(module, ACTIVATIONS):
            if source is not None and isinstance(source[1], NORM_TYPES):
                plan.norms[source[0]] = name
                source = producer.get(id(source[2]))
            if source is None or not isinstance(source[1], WEIGHTED):
                raise _refuse(f"activation '{name}' does not read a Linear/Conv2d layer's output "
                              "(a residual connection or a functional operation in between?)")
            out_point[source[0]] = name
            plan.points.append(name)
        elif isinstance(module, WEIGHTED) and source is not None and isinstance(source[1], WEIGHTED):
            out_point[source[0]] = source[0]  # a hidden layer read directly by the next one
            plan.points.append(source[0])
        producer[id(y)] = (name, module, x)
    basis: dict[int, tuple[str | None, int]] = {}
    obs_shape = tuple(example.shape[1:])
    for name, module, x, y in calls:  # pass 2: the basis of every tensor, and each layer's input basis
        b_in = basis.get(id(x))
        if b_in is None:
            if tuple(x.shape[1:]) != obs_shape:
                raise _refuse(f"'{name}' reads a tensor that no supported layer produced (a functional operation?)")
            b_in = (None, 1)
        if isinstance(module, WEIGHTED):
            if isinstance(module, nn.Linear) and x.dim() != 2:
                raise _refuse(f"Linear '{name}' reads a {x.dim()}-d tensor")
            if isinstance(module, nn.Conv2d) and b_in[1] != 1:
                raise _refuse(f"Conv2d '{name}' reads a flattened map")
            plan.layers.append(Layer(name, out_point.get(name), b_in[0], b_in[1]))
            b_out = (out_point.get(name), 1)
        elif isinstance(module, NORM_TYPES):
            if name not in plan.norms:
                raise _refuse(f"norm '{name}' is not followed by an activation")
            b_out = (plan.norms[name], 1)
        elif isinstance(module, ACTIVATIONS):
            b_out = (name, 1)
        elif isinstance(module, nn.Flatten) and x.dim() == 4 and b_in[0] is not None:
            b_out = (b_in[0], b_in[1] * x.shape[2] * x.shape[3])
        else:  # flatten of a vector or of the input, padding, identity: the basis is unchanged
            b_out = b_in
        basis[id(y)] = b_out
    return plan


def _points_output(network: nn.Module, points: list[str], batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each merge point's activations on `batch`, as (samples, units): conv maps pooled over space."""
    modules = dict(network.named_modules())
    found: dict[str, torch.Tensor] = {}
    hooks = [modules[p].register_forward_hook(lambda m, a, out, p=p: found.__setitem__(p, out)) for p in points]
    try:
        with torch.no_grad():
            network(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return {p: (x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.dim() == 4 else x.reshape(len(x), -1))
            for p, x in found.items()}


def point_moments(reference: nn.Module, other: nn.Module, plan: MergePlan, observations: torch.Tensor,
                  batch_size: int = 1024) -> dict[str, JointMoments]:
    """The joint moments of (reference, other) activations at every merge point over `observations`."""
    moments = {p: JointMoments() for p in plan.points}
    for start in range(0, len(observations), batch_size):
        batch = observations[start:start + batch_size]
        xa, xb = _points_output(reference, plan.points, batch), _points_output(other, plan.points, batch)
        for p in plan.points:
            moments[p].add(xa[p], xb[p])
    return moments


def align(moments: dict[str, JointMoments], method: str, gamma: float
          ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
    """Per point (T, (T^T)^{-1}) for `method`, and the mean correlation behind it (the canonical
    correlations for cca, the matched pairs' correlations for permute, nan for average)."""
    transforms, quality = {}, {}
    for point, m in moments.items():
        cov = m.covariance()
        if method == "cca":
            t, t_inv_t, corr = cca_transform(cov, m.d_a, gamma, f"merge point '{point}'")
        elif method == "permute":
            t, t_inv_t, corr = permutation_transform(cov, m.d_a)
        else:
            t = t_inv_t = torch.eye(m.d_a, dtype=torch.float64)
            corr = torch.tensor([float("nan")])
        transforms[point], quality[point] = (t, t_inv_t), float(corr.mean())
    return transforms, quality


def transform_state(state: dict[str, torch.Tensor], plan: MergePlan,
                    transforms: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A float64 copy of `state` written in the reference's basis: W' = T_out^T W (T_in^T)^{-1},
    b' = T_out^T b, a norm's gain and offset g' = T^T g (see the module docstring)."""
    out = {k: v.detach().double().clone() if v.is_floating_point() else v.clone() for k, v in state.items()}
    for layer in plan.layers:
        w = out[f"{layer.name}.weight"]
        if layer.out_point is not None:
            t = transforms[layer.out_point][0]
            w = torch.tensordot(t.T, w, dims=1)
            if out.get(f"{layer.name}.bias") is not None:
                out[f"{layer.name}.bias"] = t.T @ out[f"{layer.name}.bias"]
        if layer.in_point is not None:
            t_inv_t = transforms[layer.in_point][1]
            if w.dim() == 4:  # conv: over the input channels
                w = torch.einsum("ochw,cd->odhw", w, t_inv_t)
            elif layer.in_spatial > 1:  # a Linear on a flattened (C, H, W) map: per channel's block
                rows = w.shape[0]
                w = torch.einsum("ocs,cd->ods", w.view(rows, t_inv_t.shape[0], layer.in_spatial), t_inv_t)
                w = w.reshape(rows, -1)
            else:
                w = w @ t_inv_t
        out[f"{layer.name}.weight"] = w
    for norm, point in plan.norms.items():
        t = transforms[point][0]
        for part in ("weight", "bias"):
            if out.get(f"{norm}.{part}") is not None:
                out[f"{norm}.{part}"] = t.T @ out[f"{norm}.{part}"]
    return out


def merge_networks(networks: list[nn.Module], observations: torch.Tensor | None, method: str,
                   gamma: float = DEFAULT_GAMMA, batch_size: int = 1024) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Merge N >= 2 networks of one architecture; networks[0] is the reference.

    observations: (n, *obs_shape), the states the activation statistics are taken on (n >= 2; unused,
    and may be None, for `average`, which also takes any architecture).
    Returns the merged state_dict (each tensor in its original dtype) and a report
    {"method", "gamma", "points", "correlation": [per other network: {point: mean correlation}]}.
    Raises UserError for an unknown method, gamma < 0, unsupported networks, `cca` with norms, or
    networks whose state_dicts differ in names or shapes.
    """
    if method not in METHODS:
        raise UserError(f"unknown merge method {method!r}; choose one of {', '.join(METHODS)}")
    if gamma < 0:
        raise UserError(f"--gamma must be >= 0, got {gamma}")
    if len(networks) < 2:
        raise UserError(f"merge needs at least two networks, got {len(networks)}")
    states = [net.state_dict() for net in networks]
    ref_shapes = {k: tuple(v.shape) for k, v in states[0].items()}
    for state in states[1:]:
        if {k: tuple(v.shape) for k, v in state.items()} != ref_shapes:
            raise UserError("the networks to merge have different architectures (parameter names or shapes differ)")
    was_training = [net.training for net in networks]
    for net in networks:
        net.eval()
    try:
        plan = plan_network(networks[0], observations[:2]) if method != "average" else MergePlan()
        if method == "cca" and plan.norms:
            raise UserError("--method cca cannot merge networks with normalisation layers (nap.norm): a general linear "
                            "map of the units does not commute with LayerNorm's per-sample normalisation; use "
                            "--method permute (exact for norms) or average")
        aligned = [{k: v.detach().double() if v.is_floating_point() else v for k, v in states[0].items()}]
        report: dict[str, Any] = {"method": method, "gamma": gamma if method == "cca" else None,
                                  "points": list(plan.points), "correlation": []}
        for net, state in zip(networks[1:], states[1:]):
            if method == "average":  # every unit keeps its index: no statistics, no transform
                aligned.append(transform_state(state, plan, {}))
                continue
            moments = point_moments(networks[0], net, plan, observations, batch_size)
            transforms, quality = align(moments, method, gamma)
            aligned.append(transform_state(state, plan, transforms))
            report["correlation"].append(quality)
    finally:
        for net, training in zip(networks, was_training):
            net.train(training)
    merged = {}
    for key, ref in states[0].items():
        if ref.is_floating_point():
            merged[key] = (sum(a[key] for a in aligned) / len(aligned)).to(ref.dtype)
        else:  # counters and other integer buffers: the reference's
            merged[key] = ref.clone()
    return merged, report
