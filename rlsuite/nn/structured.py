"""Structured linear maps for the transformer's feed-forward layers (Wei, Moalla, Pascanu, Gulcehre,
"Building on Efficient Foundations: Effectively Training LLMs with Structured Feedforward Layers",
arXiv 2406.16450; official code CLAIRE-Labo/StructuredFFN, read for reference only).

Each map stands in for a dense W (d_out x d_in) of an `nn.Linear`; x is (..., d_in), the output
(..., d_out); the bias is added once, as `nn.Linear` adds it (zero at init, as the GPT init does):

    LowRank       y = U (V x)                      V (r, d_in), U (d_out, r)
    BlockShuffle  y = P_out U_b P_mid V_b x        V_b: k blocks (m/k, d_in/k), U_b: k blocks (d_out/k, m/k),
                  (the Monarch form)               m = min(d_in, d_out) (the official code's middle width)
    BlockDense    y = U (V_b x)                    V_b: k blocks (r/k, d_in/k), U (d_out, r)

V_b x: the input cut into k contiguous chunks, chunk j through block j, the results concatenated.
P_mid is the stride permutation: the m first-stage outputs, read as a (m/k, k) matrix row by row,
are transposed, so second-stage block j reads outputs j, j + k, j + 2k, ... (a slice of every
first-stage block when k | m/k). P_out un-shuffles the same way: element i of block j lands at i k + j.

Initialisation (the paper's, as its code does it):
- LowRank: a dense N(0, 0.02^2) draw W, its SVD W = A S B^T, then V = sqrt(S_r) B_r^T, U = A_r sqrt(S_r):
  the best rank-r approximation of a standard init, split evenly between the factors.
- BlockShuffle, BlockDense: every block (and BlockDense's dense U) N(0, 0.02^2), then replaced by
  its orthogonal polar factor (A B^T of its SVD), so every singular value is 1.

`dense_matrix()` materialises the map as one d_out x d_in matrix (the paper's pre-merge: with no
nonlinearity between the factors the product is exact). `parameter_count` / `flop_count` give the
formulas: FLOPs per token are 2 per multiply-add of the matrix products, the bias excluded.
Self-guided training wraps any of these (rlsuite.nn.self_guided).

Random draws come from `generator` when one is passed, else from torch's default generator, which
the agent seeds from the run's network stream before it builds the model (as every other layer's init).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("dense", "lowrank", "blockdiag", "blockdense")
"""The values of agent.model.ffn; 'blockdiag' is the paper's BlockShuffle (Monarch form)."""
INIT_STD = 0.02
"""The std of the dense draws the structured inits start from (GPT-2's, the paper's 'fixed' init)."""


def _normal(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator) * INIT_STD


def _polar(m: torch.Tensor) -> torch.Tensor:
    """The orthogonal polar factor A B^T of m = A S B^T (its nearest matrix with unit singular values)."""
    a, _, bh = torch.linalg.svd(m, full_matrices=False)
    return a @ bh


class StructuredLinear(nn.Module):
    """What the three maps share: widths, the bias (as nn.Linear's, zero at init), `forward` =
    `product` + bias, `dense_matrix`, and the counts. Subclasses define `product(x)` (no bias)."""

    decayed_weights: tuple[str, ...] = ("v", "u")
    """Parameters AdamW decays as it decays a dense layer's weight (rlsuite.agents.dt)."""

    def __init__(self, d_in: int, d_out: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = d_in, d_out
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def product(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.product(x)
        return y if self.bias is None else y + self.bias

    def dense_matrix(self) -> torch.Tensor:
        """The equivalent d_out x d_in matrix W (y = W x + b), on the factors' device and dtype."""
        p = self.u
        return self.product(torch.eye(self.in_features, device=p.device, dtype=p.dtype)).t()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters(recurse=False))

    def flop_count(self) -> int:
        """FLOPs per token of the matrix products (2 per multiply-add; bias excluded)."""
        raise NotImplementedError


class LowRank(StructuredLinear):
    """y = U (V x) + b with V (rank, d_in), U (d_out, rank); SVD-split init (module docstring)."""

    def __init__(self, d_in: int, d_out: int, rank: int, bias: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(d_in, d_out, bias)
        if not 1 <= rank <= min(d_in, d_out):
            raise ValueError(f"rank {rank} must be in [1, min({d_in}, {d_out})]")
        self.rank = rank
        a, s, bh = torch.linalg.svd(_normal((d_out, d_in), generator), full_matrices=False)
        root = s[:rank].sqrt()
        self.v = nn.Parameter(root[:, None] * bh[:rank])
        self.u = nn.Parameter(a[:, :rank] * root[None, :])

    @staticmethod
    def count(d_in: int, d_out: int, rank: int, bias: bool = True) -> int:
        """Parameters: rank (d_in + d_out) + d_out bias."""
        return rank * (d_in + d_out) + (d_out if bias else 0)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.v), self.u)

    def dense_matrix(self) -> torch.Tensor:
        return self.u @ self.v

    def flop_count(self) -> int:
        return 2 * self.rank * (self.in_features + self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.rank} -> {self.out_features}, bias={self.bias is not None}"


class BlockShuffle(StructuredLinear):
    """The Monarch form f_out(U_b f_mid(V_b x)) + b with k blocks (module docstring); v (k, m/k,
    d_in/k), u (k, d_out/k, m/k), m = min(d_in, d_out). ValueError unless k divides both widths."""

    def __init__(self, d_in: int, d_out: int, blocks: int, bias: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(d_in, d_out, bias)
        if blocks < 1 or d_in % blocks or d_out % blocks:
            raise ValueError(f"{blocks} blocks must divide both widths {d_in} and {d_out}")
        self.blocks, self.middle = blocks, min(d_in, d_out)
        k, q = blocks, self.middle // blocks
        self.v = nn.Parameter(torch.stack([_polar(_normal((q, d_in // k), generator)) for _ in range(k)]))
        self.u = nn.Parameter(torch.stack([_polar(_normal((d_out // k, q), generator)) for _ in range(k)]))

    @staticmethod
    def count(d_in: int, d_out: int, blocks: int, bias: bool = True) -> int:
        """Parameters: (d_in + d_out) min(d_in, d_out) / k + d_out bias."""
        return (d_in + d_out) * min(d_in, d_out) // blocks + (d_out if bias else 0)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], self.blocks
        n, q = math.prod(lead), self.middle // k
        h = torch.matmul(x.reshape(n, k, -1).transpose(0, 1), self.v.transpose(1, 2))  # (k, n, q): block j's outputs
        # P_mid: the n rows of m outputs read as (q, k), transposed: block j gets outputs j, j + k, ...
        h = h.transpose(0, 1).reshape(n, q, k).permute(2, 0, 1)  # (k, n, q)
        y = torch.matmul(h, self.u.transpose(1, 2))  # (k, n, d_out / k)
        return y.permute(1, 2, 0).reshape(*lead, self.out_features)  # P_out: element i of block j -> i k + j

    def flop_count(self) -> int:
        return 2 * (self.in_features + self.out_features) * self.middle // self.blocks

    def extra_repr(self) -> str:
        return (f"{self.in_features} -> {self.middle} -> {self.out_features}, {self.blocks} blocks, "
                f"bias={self.bias is not None}")


class BlockDense(StructuredLinear):
    """y = U (V_b x) + b: k contiguous input chunks to rank / k each, concatenated, then a dense
    U (d_out, rank); v (k, rank/k, d_in/k). ValueError unless k | d_in, k | rank, rank <= min widths."""

    def __init__(self, d_in: int, d_out: int, rank: int, blocks: int, bias: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(d_in, d_out, bias)
        if blocks < 1 or d_in % blocks or rank % blocks or not 1 <= rank <= min(d_in, d_out):
            raise ValueError(f"{blocks} blocks must divide the input width {d_in} and the rank {rank}, "
                             f"and the rank must be at most min({d_in}, {d_out})")
        self.rank, self.blocks = rank, blocks
        self.v = nn.Parameter(torch.stack([_polar(_normal((rank // blocks, d_in // blocks), generator))
                                           for _ in range(blocks)]))
        self.u = nn.Parameter(_polar(_normal((d_out, rank), generator)))

    @staticmethod
    def count(d_in: int, d_out: int, rank: int, blocks: int, bias: bool = True) -> int:
        """Parameters: rank d_in / k + d_out rank + d_out bias."""
        return rank * d_in // blocks + d_out * rank + (d_out if bias else 0)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], self.blocks
        n = math.prod(lead)
        h = torch.matmul(x.reshape(n, k, -1).transpose(0, 1), self.v.transpose(1, 2))  # (k, n, rank / k)
        return F.linear(h.transpose(0, 1).reshape(n, self.rank), self.u).reshape(*lead, self.out_features)

    def flop_count(self) -> int:
        return 2 * self.rank * (self.in_features // self.blocks + self.out_features)

    def extra_repr(self) -> str:
        return (f"{self.in_features} -> {self.rank} ({self.blocks} blocks) -> {self.out_features}, "
                f"bias={self.bias is not None}")


# ----------------------------------------------------------------------------- the FFN's choice


def resolved_rank(cfg: Any) -> int:
    """agent.model.ffn_rank, 0 meaning embed_dim // 4 (the paper's 32%-parameter setting)."""
    return int(cfg.ffn_rank) or max(1, cfg.embed_dim // 4)


def make_linear(cfg: Any, d_in: int, d_out: int) -> nn.Module:
    """One FFN linear layer d_in -> d_out of a TransformerConfig's `ffn` kind: a plain nn.Linear
    for 'dense' (exactly as before structured layers existed), else the structured map, wrapped
    for self-guided training when sgt_ratio > 0. ValueError for shapes the kind cannot take."""
    if cfg.ffn == "dense":
        return nn.Linear(d_in, d_out)
    if cfg.ffn == "lowrank":
        layer: StructuredLinear = LowRank(d_in, d_out, resolved_rank(cfg))
    elif cfg.ffn == "blockdiag":
        layer = BlockShuffle(d_in, d_out, cfg.ffn_blocks)
    elif cfg.ffn == "blockdense":
        layer = BlockDense(d_in, d_out, resolved_rank(cfg), cfg.ffn_blocks)
    else:
        raise ValueError(f"unknown ffn kind {cfg.ffn!r}; choose from {', '.join(KINDS)}")
    if cfg.sgt_ratio > 0:
        from rlsuite.nn.self_guided import SelfGuided

        return SelfGuided(layer)
    return layer


def ffn_problem(cfg: Any, prefix: str = "agent.model.") -> str | None:
    """Why a TransformerConfig's FFN settings cannot build (one line naming the keys), or None.
    The FFN's layers are embed_dim -> 4 embed_dim -> embed_dim, so every rule is on embed_dim."""
    kind, d, k = cfg.ffn, cfg.embed_dim, cfg.ffn_blocks
    if kind == "dense":
        if cfg.sgt_ratio > 0:
            return (f"{prefix}sgt_ratio={cfg.sgt_ratio} guides structured FFN layers, and {prefix}ffn is dense: "
                    f"set {prefix}ffn to lowrank, blockdiag or blockdense, or {prefix}sgt_ratio=0")
        return None
    if cfg.n_layer == 1 and cfg.ffn_first_dense:
        return (f"{prefix}ffn={kind} with {prefix}n_layer=1 and {prefix}ffn_first_dense=true leaves no "
                f"structured FFN: set {prefix}ffn_first_dense=false or add layers")
    rank = resolved_rank(cfg)
    if kind in ("lowrank", "blockdense") and rank > d:
        return (f"bad value for {prefix}ffn_rank: {rank} (the rank must be at most the FFN layers' smaller "
                f"width, {prefix}embed_dim={d})")
    if kind in ("blockdiag", "blockdense") and d % k:
        return (f"bad value for {prefix}ffn_blocks: {k} (the blocks must divide the FFN layers' widths "
                f"{d} and {4 * d}, i.e. {prefix}embed_dim={d})")
    if kind == "blockdense" and rank % k:
        return f"bad value for {prefix}ffn_blocks: {k} (the blocks must divide the rank {prefix}ffn_rank={rank})"
    return None


def ffn_summary(blocks: Any) -> dict[str, int]:
    """Parameters and FLOPs per token of the FFN layers of `blocks` (each with `mlp` = (fc1, act,
    fc2, drop)) and of the same FFNs all dense; structured layers in self-guided training also count
    their dense guides ('guide_params', 'guide_flops', spent while guided)."""
    out = dict.fromkeys(("params", "flops", "dense_params", "dense_flops", "guide_params", "guide_flops"), 0)
    for block in blocks:
        for layer in (block.mlp[0], block.mlp[2]):
            d_in, d_out = layer.in_features, layer.out_features
            out["dense_params"] += d_in * d_out + d_out
            out["dense_flops"] += 2 * d_in * d_out
            inner = getattr(layer, "structured", layer)
            if isinstance(inner, StructuredLinear):
                out["params"] += inner.parameter_count()
                out["flops"] += inner.flop_count()
                if inner is not layer:
                    out["guide_params"] += d_in * d_out
                    out["guide_flops"] += 2 * d_in * d_out
            else:
                out["params"] += d_in * d_out + d_out
                out["flops"] += 2 * d_in * d_out
    return out


def ffn_report(model: Any, guided_updates: int = 0) -> str:
    """One line for a run's start: the model's parameters, its FFN's parameters and FLOPs per
    token against the same FFN all dense, and the self-guided phase (a DecisionTransformer)."""
    m, c = model.cfg, ffn_summary(model.blocks)
    rank = f" rank {resolved_rank(m)}" if m.ffn in ("lowrank", "blockdense") else ""
    blocks = f" {m.ffn_blocks} blocks" if m.ffn in ("blockdiag", "blockdense") else ""
    params = sum(p.numel() for p in model.parameters())
    line = (f"ffn {m.ffn}{rank}{blocks}" + (" (first block dense)" if m.ffn_first_dense else "")
            + f"  |  {params:,} parameters, FFN {c['params']:,} of {c['dense_params']:,} dense "
            f"({c['params'] / c['dense_params']:.0%})  |  FFN FLOPs per token {c['flops']:,} of "
            f"{c['dense_flops']:,} dense ({c['flops'] / c['dense_flops']:.0%})")
    if c["guide_params"]:
        line += (f"  |  self-guided ({m.sgt_schedule}) for {guided_updates:,} updates: dense guides of "
                 f"{c['guide_params']:,} parameters, +{c['guide_flops']:,} FLOPs per token while guided")
    return line
