"""The Decision Transformer network (Chen et al. 2021), with the Multi-Game DT's binned returns
(Lee et al. 2022) as an option.

A trajectory window of K steps becomes 3K tokens, three per step, each with the step's learned
timestep embedding added; a causal GPT (pre-LayerNorm blocks as GPT-2, dropout on the embeddings,
the attention probabilities and both residual branches) runs over them, and heads read fixed token
positions:

    returns "continuous" (DT):  tokens (R_t, s_t, a_t); action logits at s_t.
        R_t enters through a linear layer (R_t * return_scale); no return head.
    returns "bins" (MGDT):      tokens (s_t, R_t, a_t); return logits at s_t, action logits at R_t.
        R_t is clipped to [return_min, return_max], rounded to an integer bin, and embedded.
        Departures from MGDT: the per-step timestep embedding above (MGDT learns one embedding
        per token position in the window and has no timestep input), and every R_t token is kept
        (MGDT masks all but the first, single_return_token=True).

So in both layouts the action at step t is predicted from tokens of steps <= t and the return
from tokens before R_t: never from a_t or anything later. Windows are right-padded (the padding
mask of the sampler): with a causal mask, padding after a step can never reach it, so the
network needs no key mask; the loss ignores padded steps.

Work that no output depends on is not done (rlsuite.nn.attention has the kernels; the function
computed is the same, tested against a float64 reference in tests/test_transformer_speed.py):
- the last block computes only the tokens the heads read (1 of 3 per step, 2 with 'bins'): their
  queries over every token's keys and values, their attention output, residual and MLP;
- without a working memory, a `mask` with padding (at most `PADDING_SKIP` of the steps real) makes
  the network run on the real steps only: their tokens through the encoder, embeddings, LayerNorms
  and linear layers, attention in the window's layout with the padded steps zero (the causal mask
  keeps them from every real step). The outputs at padded steps are then zeros, which no loss reads.
  (The encoders here are per observation, so leaving padded observations out changes nothing.)

Shapes: obs (B, K, *obs_shape) (uint8 images or float vectors), actions (B, K) int64,
returns-to-go (B, K) float, timesteps (B, K) int64. Initialisation as GPT-2 / minGPT (the DT
code's backbone): linear and embedding weights N(0, 0.02), zero biases, LayerNorm (1, 0); the
observation encoder keeps its own init (rlsuite.nn.encoders), and so do structured feed-forward
layers (agent.model.ffn: low-rank, block-shuffle or block-dense maps, optionally self-guided;
rlsuite.nn.structured, rlsuite.nn.self_guided). With ffn 'dense' the blocks are exactly as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlsuite.config.fields import choice, ranged
from rlsuite.nn.attention import Dropout, causal_attention, residual_dropout
from rlsuite.nn.memory import MemoryConfig, WorkingMemory
from rlsuite.nn.structured import ffn_problem, make_linear


@dataclass
class TransformerConfig:
    """Size and token layout of the Decision Transformer (defaults: the spec's CPU-scale DT, §1.10)."""

    context: int = ranged(20, ge=1)
    """K: steps per training window and the most history the policy attends to at evaluation (3K tokens)."""
    embed_dim: int = ranged(128, ge=8)
    """d: token width."""
    n_layer: int = ranged(3, ge=1)
    """Transformer blocks."""
    n_head: int = ranged(4, ge=1)
    """Attention heads per block (embed_dim must be a multiple)."""
    dropout: float = ranged(0.1, ge=0.0, lt=1.0)
    """Dropout on embeddings, attention weights and residual branches (DT: 0.1)."""
    max_timestep: int = ranged(10_000, ge=1)
    """Size of the learned timestep table; later timesteps use its last row (DT Atari: the longest episode in the data)."""
    returns: str = choice("continuous", "continuous", "bins")
    """'continuous': return-to-go through a linear layer, tokens (R, s, a) (Chen et al. 2021). 'bins': integer return bins with a return head, tokens (s, R, a) (Lee et al. 2022, MGDT)."""
    return_scale: float = ranged(1.0, gt=0.0)
    """'continuous': the return-to-go enters as R * return_scale (DT: 1/1000 for MuJoCo; Atari returns unscaled)."""
    return_min: int = -20
    """'bins': the lowest return bin (MGDT: -20); returns below are clipped to it."""
    return_max: int = 100
    """'bins': the highest return bin (MGDT: 100); returns above are clipped to it."""
    ffn: str = choice("dense", "dense", "lowrank", "blockdiag", "blockdense")
    """The blocks' feed-forward layers (Wei et al. 2024, arXiv 2406.16450; rlsuite.nn.structured): 'dense' (nn.Linear), 'lowrank' (U V x, rank ffn_rank), 'blockdiag' (the paper's BlockShuffle, the Monarch form: block-diagonal, stride permutation, block-diagonal, ffn_blocks blocks) or 'blockdense' (ffn_blocks block-diagonal chunks to rank ffn_rank, then dense). Both of a block's FFN layers (d -> 4d -> d) take the same structure."""
    ffn_rank: int = ranged(0, ge=0)
    """ffn 'lowrank' and 'blockdense': the rank r of each FFN layer (at most embed_dim); 0 = embed_dim // 4 (the paper's 32%-parameter setting)."""
    ffn_blocks: int = ranged(4, ge=1)
    """ffn 'blockdiag' and 'blockdense': the number of blocks k (must divide embed_dim; blockdense: also the rank). The paper's code: 2 for BlockShuffle, 4 for BlockDense."""
    ffn_first_dense: bool = True
    """Keep the first block's FFN dense with a structured ffn (the paper does)."""
    sgt_ratio: float = ranged(0.0, ge=0.0, le=1.0)
    """Self-guided training of the structured FFN layers (rlsuite.nn.self_guided): a dense guide, alpha W_g x + (1 - alpha) S(x), with alpha from 1 to 0 over this fraction of the run's updates (0 = off; the paper: 0.5)."""
    sgt_schedule: str = choice("cosine", "cosine", "linear")
    """How alpha falls from 1 to 0 during self-guided training: 'cosine' (the paper's) or 'linear'."""


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"embed_dim {d} is not a multiple of n_head {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.resid_drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        y = causal_attention(self.qkv(x).view(b, n, 3, self.heads, d // self.heads), None, self.dropout,
                             self.training)
        return self.resid_drop(self.proj(y.view(b, n, d)))

    def project_qkv(self, h: torch.Tensor, read: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries of the tokens at in-step positions `read` and keys / values of all tokens, from
        `h` (S, 3, d): ((S, len(read), d), (S, 3, 2d)). A plain Linear computes only those queries;
        a wrapped one (LoRA) or one with hooks is called as a module on all tokens."""
        d, lin = h.shape[-1], self.qkv
        if type(lin) is nn.Linear and not (lin._forward_hooks or lin._forward_pre_hooks):
            w, b = lin.weight, lin.bias
            q = F.linear(_at(h, read), w[:d], None if b is None else b[:d])
            return q, F.linear(h, w[d:], None if b is None else b[d:])
        full = lin(h)
        return _at(full, read)[..., :d], full[..., d:]


class Block(nn.Module):
    """Pre-LN GPT block: x + attn(LN(x)), then x + MLP(LN(x)) with a 4d GELU MLP. With a working
    memory (DT-Mem, memory.placement 'block') its read-outs of LN_m(x) join the attention branch.
    `ffn`: a TransformerConfig whose ffn keys make the MLP's two linear layers structured
    (rlsuite.nn.structured.make_linear); None: dense nn.Linear layers."""

    def __init__(self, d: int, heads: int, dropout: float, memory: MemoryConfig | None = None,
                 ffn: TransformerConfig | None = None) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, dropout)
        if ffn is None:
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), Dropout(dropout))
        else:
            self.mlp = nn.Sequential(make_linear(ffn, d, 4 * d), nn.GELU(), make_linear(ffn, 4 * d, d),
                                     Dropout(dropout))
        self.memory = WorkingMemory(d, memory) if memory is not None else None
        self.ln_m = nn.LayerNorm(d) if memory is not None else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(output, memory after the window, the memory's input (B, K, 3, d)); the last two None
        without a memory."""
        branch = self.attn(self.ln1(x))
        new_state = inputs = None
        if self.memory is not None:
            b, n, d = x.shape
            inputs = self.ln_m(x).view(b, n // 3, 3, d)
            reads, new_state = self.memory(inputs, mask, state)
            branch = branch + reads.reshape(b, n, d)
        x = x + branch
        return x + self.mlp(self.ln2(x)), new_state, inputs

    def steps_forward(self, x: torch.Tensor, steps: _Steps, read: tuple[int, ...] | None = None) -> torch.Tensor:
        """The block without a memory on the tokens of S steps, x (S, 3, d) (`steps`: where they sit
        in the (B, K) window). `read` None: all tokens out, (S, 3, d); else only the tokens at those
        in-step positions, (S, len(read), d) (their queries, over every token's keys and values)."""
        s, _, d = x.shape
        attn, heads, b, k = self.attn, self.attn.heads, steps.b, steps.k
        h = self.ln1(x)
        if read is None:
            qkv = steps.to_window(attn.qkv(h)).view(b, 3 * k, 3, heads, d // heads)
            y = causal_attention(qkv, None, attn.dropout, self.training)
            x = residual_dropout(x, attn.proj(steps.from_window(y.view(b * k, 3, d))), attn.resid_drop)
        else:
            q, kv = attn.project_qkv(h, read)
            q = steps.to_window(q).view(b, k * len(read), heads, d // heads)
            kv = steps.to_window(kv).view(b, 3 * k, 2, heads, d // heads)
            positions = tuple(3 * t + r for t in range(k) for r in read)
            y = causal_attention(q, kv, attn.dropout, self.training, positions)
            x = residual_dropout(_at(x, read), attn.proj(steps.from_window(y.view(b * k, len(read), d))),
                                 attn.resid_drop)
        fc1, act, fc2, drop = self.mlp
        return residual_dropout(x, fc2(act(fc1(self.ln2(x)))), drop)


def _at(x: torch.Tensor, read: tuple[int, ...]) -> torch.Tensor:
    """x[:, read] for in-step positions `read` (a view when they are consecutive)."""
    if list(read) == list(range(read[0], read[0] + len(read))):
        return x[:, read[0]:read[0] + len(read)]
    return x[:, list(read)]


class _Steps:
    """Where S steps of tokens sit in a (B, K) window: `rows` (S,) their flat indices b * K + t, or
    None when all B K steps are there in order."""

    def __init__(self, b: int, k: int, rows: torch.Tensor | None) -> None:
        self.b, self.k, self.rows = b, k, rows

    def from_window(self, t: torch.Tensor) -> torch.Tensor:
        """(B K, ...) -> (S, ...): the S steps' rows."""
        return t if self.rows is None else t.index_select(0, self.rows)

    def to_window(self, t: torch.Tensor) -> torch.Tensor:
        """(S, ...) -> (B K, ...); steps not in `rows` are zeros."""
        if self.rows is None:
            return t
        return t.new_zeros(self.b * self.k, *t.shape[1:]).index_copy_(0, self.rows, t)


class DecisionTransformer(nn.Module):
    """Causal transformer over (return, observation, action) tokens; see the module docstring.

    `encoder`: an rlsuite.nn.encoders module mapping (N, *obs_shape) to (N, encoder.output_dim).
    `forward` returns {"action": (B, K, num_actions)} and, with returns 'bins', {"return": (B, K,
    num_bins)} logits."""

    PADDING_SKIP = 0.9
    """Without a memory, a `mask` whose real steps are at most this fraction of the window's steps
    makes the network run on the real steps only (the outputs at padded steps are then zeros);
    above it the gather and scatter would cost more than the padding."""
    skip_padding = True
    """False: always run on the whole window (for measuring what skipping padding saves)."""

    def __init__(self, cfg: TransformerConfig, encoder: nn.Module, num_actions: int,
                 memory: MemoryConfig | None = None) -> None:
        super().__init__()
        if cfg.returns == "bins" and cfg.return_max <= cfg.return_min:
            raise ValueError(f"return_max ({cfg.return_max}) must exceed return_min ({cfg.return_min})")
        self.cfg, d = cfg, cfg.embed_dim
        self.num_actions = num_actions
        self.encoder = encoder
        self.obs_embed = nn.Linear(encoder.output_dim, d)
        # One extra action row: the action of the step being decided is unknown at evaluation; it
        # comes after everything the prediction reads, so any row would do, but a dedicated one keeps
        # it from ever meaning a real action.
        self.action_embed = nn.Embedding(num_actions + 1, d)
        if cfg.returns == "bins":
            self.num_bins = cfg.return_max - cfg.return_min + 1
            self.return_embed: nn.Module = nn.Embedding(self.num_bins, d)
            self.return_head: nn.Module | None = nn.Linear(d, self.num_bins)
        else:
            self.num_bins = 0
            self.return_embed = nn.Linear(1, d)
            self.return_head = None
        self.timestep_embed = nn.Embedding(cfg.max_timestep, d)
        self.drop = Dropout(cfg.dropout)
        per_block = memory if memory is not None and memory.placement == "block" else None
        problem = ffn_problem(cfg)
        if problem is not None:
            raise ValueError(problem)
        # Structured FFNs (rlsuite.nn.structured) keep their own inits: _gpt_init only touches
        # nn.Linear, nn.Embedding and nn.LayerNorm.
        structured = (lambda i: None if cfg.ffn == "dense" or (i == 0 and cfg.ffn_first_dense) else cfg)
        self.blocks = nn.ModuleList(Block(d, cfg.n_head, cfg.dropout, per_block, structured(i))
                                    for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, num_actions)
        for name, module in self.named_modules():
            if not name.startswith("encoder"):
                _gpt_init(module)
        # DT-Mem (rlsuite.nn.memory): built after the GPT init so it keeps its own (distinct slots).
        self.memory = WorkingMemory(d, memory) if memory is not None and memory.placement == "model" else None
        self.placement = memory.placement if memory is not None else "none"
        for block in self.blocks:  # the GPT init above must not touch the slots' orthogonal init
            if block.memory is not None:
                nn.init.orthogonal_(block.memory.initial)

    # -- tokens ----------------------------------------------------------------------------
    def return_bins(self, returns: torch.Tensor) -> torch.Tensor:
        """Integer bin (0 .. num_bins-1) of each return: round(clip(R, return_min, return_max)) - return_min."""
        c = self.cfg
        return torch.round(returns.clamp(c.return_min, c.return_max)).long() - c.return_min

    def bin_values(self) -> torch.Tensor:
        """The return each bin stands for, (num_bins,)."""
        return torch.arange(self.cfg.return_min, self.cfg.return_max + 1, dtype=torch.float32)

    def embed_returns(self, returns: torch.Tensor) -> torch.Tensor:
        if self.cfg.returns == "bins":
            return self.return_embed(self.return_bins(returns))
        return self.return_embed((returns * self.cfg.return_scale).unsqueeze(-1).float())

    def tokens(self, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor,
               timesteps: torch.Tensor) -> torch.Tensor:
        """(B, 3K, d) token embeddings in the layout of `cfg.returns`, before dropout."""
        b, k = actions.shape
        s = self.obs_embed(self.encoder(obs.reshape(b * k, *obs.shape[2:]))).view(b, k, -1)
        r = self.embed_returns(returns)
        a = self.action_embed(actions)
        time = self.timestep_embed(timesteps.clamp(0, self.cfg.max_timestep - 1))
        first, second = (s, r) if self.cfg.returns == "bins" else (r, s)
        return (torch.stack([first, second, a], dim=2) + time.unsqueeze(2)).reshape(b, 3 * k, -1)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, timesteps: torch.Tensor,
                mask: torch.Tensor | None = None, memory: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`mask` (B, K): the window's real steps. Without a memory, padding in it makes the network
        skip the padded steps (module docstring): their outputs are zeros. With a working memory,
        `mask` says which steps write it and `memory` is its state
        before step 0 (None: an episode start): (B, N, d) once per model, (B, L, N, d) per block. The
        output then has "memory", the state after the window, and with per-block memories
        "memory_inputs" (B, L, K, 3, d), what each block's memory was written from."""
        b, k = actions.shape
        if self.placement == "none":
            return self._plain_forward(obs, actions, returns, timesteps, mask)
        x = self.tokens(obs, actions, returns, timesteps)
        state = None
        if self.memory is not None:
            reads, state = self.memory(x.view(b, k, 3, -1), mask, memory)
            x = x + reads.reshape(b, 3 * k, -1)
        x = self.drop(x)
        states, inputs = [], []
        for layer, block in enumerate(self.blocks):
            x, block_state, block_inputs = block(x, mask, None if memory is None or self.placement != "block"
                                                 else memory[:, layer])
            states.append(block_state)
            inputs.append(block_inputs)
        if self.placement == "block":
            state = torch.stack(states, 1)
        h = self.ln_f(x).view(b, k, 3, -1)
        # Position 1 of a step is s_t (continuous) or R_t (bins): both see s_t and R_t, not a_t.
        out = {"action": self.action_head(h[:, :, 1])}
        if self.return_head is not None:
            out["return"] = self.return_head(h[:, :, 0])  # at s_t: sees s_t, not R_t
        if state is not None:
            out["memory"] = state
        if self.placement == "block":
            out["memory_inputs"] = torch.stack(inputs, 1)
        return out

    def _plain_forward(self, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor,
                       timesteps: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """`forward` without a memory, computing only what the heads read (see PADDING_SKIP)."""
        b, k = actions.shape
        rows = None
        if mask is not None and self.skip_padding and not torch.compiler.is_compiling():
            valid = mask.reshape(-1)
            count = int(valid.sum())
            if 0 < count <= self.PADDING_SKIP * valid.numel():
                rows = valid.nonzero().squeeze(1)
        steps = _Steps(b, k, rows)
        if rows is None:
            x = self.tokens(obs, actions, returns, timesteps).view(b * k, 3, -1)
        else:  # the real steps as one window of S steps: tokens are per step, so this is the same
            one = (lambda t: t.reshape(b * k, *t.shape[2:]).index_select(0, rows).unsqueeze(0))
            x = self.tokens(one(obs), one(actions), one(returns), one(timesteps)).view(len(rows), 3, -1)
        x = self.drop(x)
        # Heads read position 1 (action logits) and, with bins, position 0 (return logits) of each
        # step: the last block computes only those tokens.
        read = (0, 1) if self.return_head is not None else (1,)
        for block in self.blocks[:-1]:
            x = block.steps_forward(x, steps)
        h = self.ln_f(self.blocks[-1].steps_forward(x, steps, read))
        out = {"action": steps.to_window(self.action_head(h[:, read.index(1)])).view(b, k, -1)}
        if self.return_head is not None:
            out["return"] = steps.to_window(self.return_head(h[:, read.index(0)])).view(b, k, -1)
        return out

    def initial_memory(self, batch: int) -> torch.Tensor | None:
        """The memory at an episode's start: (B, N, d), (B, L, N, d) per block, None without one."""
        if self.memory is not None:
            return self.memory.initial_state(batch)
        if self.placement == "block":
            return torch.stack([b.memory.initial_state(batch) for b in self.blocks], 1)
        return None

    def memory_modules(self) -> list[WorkingMemory]:
        return [self.memory] if self.memory is not None else [b.memory for b in self.blocks if b.memory is not None]

    def output_layers(self) -> list[nn.Module]:
        """The heads (NaP leaves them unprojected unless told otherwise)."""
        return [m for m in (self.action_head, self.return_head) if m is not None]


def _gpt_init(module: Any) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
