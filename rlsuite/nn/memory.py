"""Working memory for the Decision Transformer (DT-Mem; Kang et al., ICML 2024): rlsuite's causal
design inspired by the paper, not the paper's verified equations (the project spec
DTMEM_RETENTION.md, paper 1, §1.2, §1.9, §1.10). The spec has the paper's write only from an LLM
summary (a write strength beta = softmax, erase w(1 - beta), add (w beta) W_v x); what follows is
our reading, NTM-style erase/add with content addressing.

A memory is N learned, distinct slots of width d (`initial`, orthogonally initialised, so no two
slots start equal). One step of a trajectory (its tokens X_t, e.g. (R_t, s_t, a_t)) is *read*
first and *written* after:

    read:   r = softmax(q(X_t) k(M)^T / sqrt(d)) v(M)         every token attends over the slots
    write:  c_i = softmax_j(q'(M_i) k'(X_t,j)^T / sqrt(d)) v'(X_t)   each slot gathers the step's tokens
            w   = softmax_i(<M_i, mean_j k'(X_t,j)> / sqrt(d))      content addressing: which slots
            e_i = sigmoid(E c_i),  a_i = tanh(A c_i)                 erase and add vectors
            M_i <- M_i * (1 - w_i e_i) + w_i a_i                     (`write_iterations` times)

So a token of step t reads memory written from steps < t only (strictly before: a step never
reads what it writes itself), and nothing at step t sees a step t' > t. Padded steps (mask False)
write nothing. The state after a window is the memory an evaluation carries to the next step of
the same episode; `initial_state` starts an episode. Carrying the state step by step gives
exactly the memory recomputed over the whole prefix (tested).

Training with `burn_in` > 0 (rlsuite.agents.dt.burn_in.burn_in_memory) writes a random-length
stretch of the episode's steps before each window into the memory, without gradient, so training
windows start from memories that have absorbed earlier steps, as evaluation's do.

`variant = "released"` is the released code's behaviour, kept as a named ablation that leaks the
future: every slot starts as the same random vector z ~ N(0, I) (drawn per forward, so the slots
are identical and stay identical), and the whole window is written at once before any token
reads, so a token at step 0 reads memory written from step K - 1 (§1.9, pitfalls 1, 2, 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rlsuite.config.fields import choice, ranged


@dataclass
class MemoryConfig:
    """The working memory of DT-Mem (rlsuite.nn.memory)."""

    placement: str = choice("none", "none", "model", "block")
    """'none': a plain DT. 'model': one memory between the token embeddings and the blocks (every token adds its read-out); the dtmem presets' choice, because the memory then depends on the tokens alone, so the state an evaluation carries through an episode is exactly the whole prefix's. 'block': one memory per block beside attention (the paper's placement); at evaluation a step leaving the window is written with the activations it had as the newest step, which approximates the training-time memory."""
    slots: int = ranged(16, ge=1)
    """N: memory slots (the spec's CPU scale: 16-64; the paper's ablation: about 1,200-1,800)."""
    write_iterations: int = ranged(1, ge=1)
    """Content-addressed writes per step (the released code does 64; the spec suggests 1-2)."""
    variant: str = choice("causal", "causal", "released")
    """'causal': rlsuite's design inspired by the paper (module docstring), read before write per step. 'released': the released code (identical random slots, window-wide write before reading; leaks the future)."""
    burn_in: int = ranged(500, ge=0)
    """Training: the most steps of a window's episode before it that are written into the memory (under no_grad) before the window is trained on; each window's count is drawn uniformly from 0 to min(this, the steps its episode has before it). Evaluation carries the memory of the whole prefix (t - K + 1 writes at step t), so without a burn-in (0) training only ever sees the initial slots. 500 covers CartPole's whole episodes and the MinAtar expert episodes of this repo's studies (300-390 steps on average); it costs one token pass over the stretch and one write per step. Causal variant only (the released variant draws a fresh memory every forward)."""


class WorkingMemory(nn.Module):
    """N x d slot memory read and written per trajectory step (module docstring)."""

    def __init__(self, d: int, cfg: MemoryConfig) -> None:
        super().__init__()
        self.cfg, self.d = cfg, d
        self.initial = nn.Parameter(torch.empty(cfg.slots, d))
        nn.init.orthogonal_(self.initial)  # distinct slots (orthonormal rows while slots <= d)
        self.read_q, self.read_k, self.read_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.write_q, self.write_k, self.write_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.erase, self.add = nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def initial_state(self, batch: int) -> torch.Tensor:
        """(batch, N, d): the memory at an episode's start."""
        if self.cfg.variant == "released":  # one random vector for every slot, new each call
            z = torch.randn(batch, 1, self.d, device=self.initial.device, dtype=self.initial.dtype)
            return z.expand(batch, self.cfg.slots, self.d).contiguous()
        return self.initial.unsqueeze(0).expand(batch, -1, -1)

    def read(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, n, d) read-outs of `tokens` (B, n, d) from `memory` (B, N, d)."""
        attn = torch.softmax(self.read_q(tokens) @ self.read_k(memory).transpose(1, 2) / math.sqrt(self.d), dim=-1)
        return self.out(attn @ self.read_v(memory))

    def write(self, memory: torch.Tensor, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The memory after writing `tokens` (B, n, d); rows with `keep` (B,) False are left unchanged."""
        k, v = self.write_k(tokens), self.write_v(tokens)
        new = memory
        for _ in range(self.cfg.write_iterations):
            gather = torch.softmax(self.write_q(new) @ k.transpose(1, 2) / math.sqrt(self.d), dim=-1)
            content = gather @ v  # (B, N, d)
            address = torch.softmax((new @ k.mean(1, keepdim=True).transpose(1, 2)).squeeze(-1) / math.sqrt(self.d),
                                    dim=-1).unsqueeze(-1)  # (B, N, 1)
            erase, add = torch.sigmoid(self.erase(content)), torch.tanh(self.add(content))
            new = new * (1 - address * erase) + address * add
        if keep is None:
            return new
        return torch.where(keep.view(-1, 1, 1), new, memory)

    def forward(self, steps: torch.Tensor, mask: torch.Tensor | None = None,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` (B, K, T, d): the T tokens of each of K steps; `mask` (B, K) real steps; `state`
        (B, N, d) the memory before step 0 (None: an episode start). Returns the read-outs (B, K, T, d)
        and the memory after the window."""
        b, k = steps.shape[:2]
        memory = self.initial_state(b) if state is None else state
        if self.cfg.variant == "released":
            flat = steps.reshape(b, -1, self.d)
            memory = self.write(memory, flat)  # the whole window, future included, before any read
            return self.read(memory, flat).view_as(steps), memory
        reads = []
        for t in range(k):
            reads.append(self.read(memory, steps[:, t]))
            memory = self.write(memory, steps[:, t], None if mask is None else mask[:, t])
        return torch.stack(reads, dim=1), memory

    def slot_spread(self) -> float:
        """Smallest distance between two learned initial slots (0 would mean collapsed slots)."""
        if self.cfg.slots < 2:
            return float("inf")
        dist = torch.cdist(self.initial.detach(), self.initial.detach())
        return float(dist[~torch.eye(self.cfg.slots, dtype=torch.bool)].min())


def released_slots_identical(memory: torch.Tensor) -> bool:
    """Whether every slot of each memory row equals its first (the released code's collapse)."""
    return bool(torch.allclose(memory, memory[:, :1].expand_as(memory)))


__all__ = ["MemoryConfig", "WorkingMemory", "released_slots_identical"]
