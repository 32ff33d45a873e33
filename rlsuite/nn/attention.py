"""Dropout and causal attention for rlsuite's transformer (rlsuite.nn.transformer), fast on the CPU.

What is computed is the definition (GPT-2 / the DT paper, as torch's own ops compute it):

    dropout(x) = x * m / (1 - p),                 m_i ~ Bernoulli(1 - p), independent
    attention  = dropout(softmax(Q K^T / sqrt(d_h) + causal)) V

Only how the random masks are drawn and which kernels run differ from `F.dropout` and
`F.scaled_dot_product_attention`:

- Masks (`keep_mask`): torch's CPU `bernoulli_` costs two Mersenne-Twister draws (a double) per
  element in a serial loop (about 6 ns an element). Here one `random_` over int64 (the same seeded
  generator, `torch.default_generator` or the one given) gives two 32-bit words per 64-bit draw,
  each compared with a threshold at p * 2^32 (through float32 and a clamp, which are vectorised):
  about 2 ns an element. The rate is p to within 2^-25 (the threshold's float32 spacing; torch's
  float32 masks on a GPU are no finer), each element independent: the same distribution, not the
  same numbers as `F.dropout` under the same seed.
- Attention in training with dropout: on the CPU `scaled_dot_product_attention` with dropout_p > 0
  cannot use its fused flash kernel and falls back to its math path (copies of q, k, v, a "safe"
  softmax that scans every row for all -inf, the bernoulli masks above). Here (`_DropoutAttention`)
  it is written out on the token-major projections with its own backward: per head, batched over
  the batch, `baddbmm` (scores plus the causal -inf mask), one softmax for all heads (float32 for
  bf16 inputs), one mask, `bmm`; no copies in (float32: BLAS reads the strided per-head views) and
  one out. Without dropout (evaluation, p = 0) and off the CPU it is `scaled_dot_product_attention`
  itself (flash / fused kernels; dropout inside them on a GPU). Under torch.compile everything
  goes to torch's own ops (inductor fuses and seeds its dropout from torch's generator).
- Queries may be a subset of positions (`query_positions`): query i attends to keys
  j <= query_positions[i]. The transformer's last block uses it to compute only the tokens its heads
  read.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

_WORD = 2 ** 32
_bias_cache: dict[tuple, torch.Tensor] = {}


def _fast(x: torch.Tensor) -> bool:
    """Whether the hand-written CPU paths apply (eager, CPU)."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def drop_threshold(p: float) -> float:
    """The float32 threshold t: a signed 32-bit word w (uniform over [-2^31, 2^31)) is dropped when
    float32(w) <= t, which has probability p to within 2^-25."""
    return float(torch.tensor(-2.0 ** 31 + p * _WORD, dtype=torch.float32))


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float, device: torch.device | str = "cpu",
              scale: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """float32 tensor of `shape`: each element independently 0 with probability p (to within 2^-25),
    else 1 / (1 - p) (`scale`) or 1. Random words from `generator` (default: torch's, as seeded by
    the run); one 64-bit draw makes two elements."""
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device)
    words.random_(-2 ** 63, None, generator=generator)  # the full 64-bit range: two uniform int32 words
    f = words.view(torch.int32)[:n].to(torch.float32)
    # float(w) and the threshold are integers, so f - t >= 1 when kept and <= 0 when dropped
    f.sub_(drop_threshold(p)).clamp_(0.0, 1.0)
    if scale:
        f.mul_(1.0 / (1.0 - p))
    return f.view(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)` in distribution; on the CPU with the cheaper masks of `keep_mask`."""
    if not training or p == 0.0:
        return x
    if not _fast(x) or p >= 1.0:
        return F.dropout(x, p, True)
    if x.dtype == torch.float32:
        return x * keep_mask(x.shape, p, x.device)
    # lower precision (autocast): a 0/1 mask is exact in any dtype; 1 / (1 - p) is applied after in
    # float arithmetic, as torch's dropout does (a rounded bfloat16 scale would bias the expectation)
    return (x * keep_mask(x.shape, p, x.device, scale=False).to(x.dtype)) * (1.0 / (1.0 - p))


def residual_dropout(x: torch.Tensor, h: torch.Tensor, drop: nn.Dropout) -> torch.Tensor:
    """x + drop(h): on the CPU in float32 arithmetic one fused multiply-add with the mask (and one
    multiply in backward)."""
    if not drop.training or drop.p == 0.0 or not _fast(h) or drop.p >= 1.0 or x.dtype != torch.float32:
        return x + drop(h)
    return _ResidualDropout.apply(x, h, keep_mask(h.shape, drop.p, h.device))


class _ResidualDropout(torch.autograd.Function):
    """x + h * mask (the mask already scaled by 1 / (1 - p)), in x's dtype (float32)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.h_dtype = h.dtype
        return torch.addcmul(x, h.to(x.dtype), mask)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (mask,) = ctx.saved_tensors
        return g, (g * mask).to(ctx.h_dtype), None


class Dropout(nn.Dropout):
    """nn.Dropout (same module, same `p`, `train()` / `eval()`) computing `dropout` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def causal_bias(query_positions: tuple[int, ...] | None, nq: int, n: int, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """(nq, n) additive mask: 0 where key j <= the query's position, -inf after (cached)."""
    key = (query_positions, nq, n, str(device), dtype)
    bias = _bias_cache.get(key)
    if bias is None:
        pos = torch.arange(nq) if query_positions is None else torch.tensor(query_positions)
        allowed = torch.arange(n)[None, :] <= pos[:, None]
        bias = torch.zeros(nq, n, dtype=dtype).masked_fill_(~allowed, float("-inf")).to(device)
        if len(_bias_cache) > 64:
            _bias_cache.clear()
        _bias_cache[key] = bias
    return bias


def causal_attention(q: torch.Tensor, kv: torch.Tensor | None, p: float, training: bool,
                     query_positions: tuple[int, ...] | None = None) -> torch.Tensor:
    """dropout_p(softmax(Q K^T / sqrt(d_h) + causal)) V per head, on token-major tensors (as the
    linear projections make them, no transposes or copies).

    `kv` None: `q` is the fused projection (B, n, 3, H, d_h) (queries, keys, values) and query i is
    at position i. Else `q` (B, nq, H, d_h) and `kv` (B, n, 2, H, d_h), the queries at
    `query_positions` among the n keys. Returns (B, nq, H, d_h). Dropout p on the attention
    probabilities when `training`."""
    if kv is None:
        qh, k, v = q[:, :, 0], q[:, :, 1], q[:, :, 2]
    else:
        qh, k, v = q, kv[:, :, 0], kv[:, :, 1]
    nq, n = qh.shape[1], k.shape[1]
    p = p if training else 0.0
    if p == 0.0 or not _fast(qh):
        qt, kt, vt = qh.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if query_positions is None:
            y = F.scaled_dot_product_attention(qt, kt, vt, dropout_p=p, is_causal=True)
        else:
            allowed = causal_bias(query_positions, nq, n, qh.device, torch.float32) == 0
            y = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=allowed, dropout_p=p)
        return y.transpose(1, 2).contiguous()
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else q.dtype
    q, kv = q.to(dtype), None if kv is None else kv.to(dtype)  # what autocast would give the matmuls
    bias = causal_bias(query_positions, nq, n, q.device, dtype)
    with torch.autocast("cpu", enabled=False):
        return _DropoutAttention.apply(q, kv, bias, p)


def _accumulate(dtype: torch.dtype) -> torch.dtype:
    """The dtype softmax runs in: float32 for 16-bit inputs, else theirs."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


class _DropoutAttention(torch.autograd.Function):
    """The CPU training path of `causal_attention` (dropout p > 0): one softmax (float32 for 16-bit
    inputs) and one dropout mask for all heads, the matrix products batched over batch and heads.

    Two layouts of the same computation: float32 reads strided per-head views of the token-major
    inputs (MKL's batch GEMM takes row strides, so nothing is copied in) and writes contiguous
    per-head results; 16-bit inputs are first copied heads-first, (H B, n, d_h), because oneDNN's
    bf16 kernels would copy every strided view. Either way the output and the inputs' gradients go
    back to the token-major layout with one copy each."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, kv: torch.Tensor | None, bias: torch.Tensor, p: float) -> torch.Tensor:
        b, nq, heads, dh = q.shape[0], q.shape[1], q.shape[-2], q.shape[-1]
        n = nq if kv is None else kv.shape[1]
        scale = 1.0 / math.sqrt(dh)
        heads_first = q.dtype not in (torch.float32, torch.float64)
        if heads_first:  # (G, H, B, n, d_h) contiguous; query / key / value g is [g] viewed (H B, n, d_h)
            if kv is None:
                qs = ks = q.permute(2, 3, 0, 1, 4).contiguous()
                qh, k, v = (qs[i].view(heads * b, n, dh) for i in range(3))
            else:
                qs, ks = q.permute(2, 0, 1, 3).contiguous(), kv.permute(2, 3, 0, 1, 4).contiguous()
                qh, k, v = qs.view(heads * b, nq, dh), ks[0].view(heads * b, n, dh), ks[1].view(heads * b, n, dh)
            scores = torch.baddbmm(bias, qh, k.transpose(1, 2), alpha=scale)
        else:
            qs, ks = q, kv
            qh, k, v = _heads(q, kv)
            scores = torch.empty(heads, b, nq, n, dtype=q.dtype, device=q.device)
            for h in range(heads):
                torch.baddbmm(bias, qh[:, :, h], k[:, :, h].transpose(1, 2), alpha=scale, out=scores[h])
        acc = _accumulate(q.dtype)
        probs = torch.softmax(scores, dim=-1) if acc == q.dtype else torch.softmax(scores, dim=-1, dtype=acc)
        del scores
        # a 0/1 mask; 1 / (1 - p) is the alpha of the products with the dropped probabilities
        mask, keep = keep_mask(probs.shape, p, q.device, scale=False), 1.0 / (1.0 - p)
        dropped = (probs * mask).to(q.dtype)
        y = torch.empty(heads, b, nq, dh, dtype=q.dtype, device=q.device)
        if heads_first:
            out = y.view(heads * b, nq, dh)
            torch.baddbmm(out, dropped, v, beta=0.0, alpha=keep, out=out)
        else:
            for h in range(heads):
                torch.baddbmm(y[h], dropped[h], v[:, :, h], beta=0.0, alpha=keep, out=y[h])
        ctx.save_for_backward(qs, ks, probs, mask, dropped)
        ctx.scale, ctx.keep, ctx.heads_first, ctx.fused = scale, keep, heads_first, kv is None
        ctx.shape = (b, nq, n, heads, dh)
        return y.permute(1, 2, 0, 3).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        qs, ks, probs, mask, dropped = ctx.saved_tensors
        b, nq, n, heads, dh = ctx.shape
        scale, keep, fused, dtype = ctx.scale, ctx.keep, ctx.fused, qs.dtype
        gy = gy.to(dtype)
        # dk, dv (and dq when fused, nq == n) per head, heads first
        grads = torch.empty(3 if fused else 2, heads, b, n, dh, dtype=dtype, device=qs.device)
        dq = grads[0] if fused else torch.empty(heads, b, nq, dh, dtype=dtype, device=qs.device)
        dk, dv = grads[-2], grads[-1]
        if ctx.heads_first:
            if fused:
                qh, k, v = (qs[i].view(heads * b, n, dh) for i in range(3))
            else:
                qh, k, v = qs.view(heads * b, nq, dh), ks[0].view(heads * b, n, dh), ks[1].view(heads * b, n, dh)
            g = gy.permute(2, 0, 1, 3).contiguous().view(heads * b, nq, dh)
            dv_ = dv.view(heads * b, n, dh)
            torch.baddbmm(dv_, dropped.transpose(1, 2), g, beta=0.0, alpha=keep, out=dv_)
            grad_dropped = torch.empty(dropped.shape, dtype=dtype, device=qs.device)
            torch.baddbmm(grad_dropped, g, v.transpose(1, 2), beta=0.0, alpha=keep, out=grad_dropped)
        else:
            qh, k, v = _heads(qs, None if fused else ks)
            grad_dropped = torch.empty(dropped.shape, dtype=dtype, device=qs.device)
            for h in range(heads):
                torch.baddbmm(dv[h], dropped[h].transpose(1, 2), gy[:, :, h], beta=0.0, alpha=keep, out=dv[h])
                torch.baddbmm(grad_dropped[h], gy[:, :, h], v[:, :, h].transpose(1, 2), beta=0.0, alpha=keep,
                              out=grad_dropped[h])
        grad_probs = torch.mul(grad_dropped, mask)  # in the softmax's dtype (float32 for bf16 inputs)
        del grad_dropped
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype).to(dtype)
        del grad_probs
        if ctx.heads_first:
            gs = grad_scores
            torch.baddbmm(dk.view(heads * b, n, dh), gs.transpose(1, 2), qh, beta=0.0, alpha=scale,
                          out=dk.view(heads * b, n, dh))
            torch.baddbmm(dq.view(heads * b, nq, dh), gs, k, beta=0.0, alpha=scale, out=dq.view(heads * b, nq, dh))
        else:
            for h in range(heads):
                torch.baddbmm(dk[h], grad_scores[h].transpose(1, 2), qh[:, :, h], beta=0.0, alpha=scale, out=dk[h])
                torch.baddbmm(dq[h], grad_scores[h], k[:, :, h], beta=0.0, alpha=scale, out=dq[h])
        if fused:
            return grads.permute(2, 3, 0, 1, 4).contiguous(), None, None, None  # (B, n, 3, H, d_h)
        return dq.permute(1, 2, 0, 3).contiguous(), grads.permute(2, 3, 0, 1, 4).contiguous(), None, None


def _heads(q: torch.Tensor, kv: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token-major query, key and value views (B, n, H, d_h) of the fused or split inputs."""
    if kv is None:
        return q[:, :, 0], q[:, :, 1], q[:, :, 2]
    return q, kv[:, :, 0], kv[:, :, 1]
