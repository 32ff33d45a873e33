"""The Decision Transformer's fast CPU paths (rlsuite.nn.attention, rlsuite.nn.transformer) compute
the definition.

References are written here from the definition, in float64: attention as explicit
softmax(Q K^T / sqrt(d_h) + causal -inf) V, pre-LN GPT-2 blocks with exact GELU, dropout as
x * m / (1 - p). With dropout on, the references replay the masks the model drew (recorded from
`keep_mask`), so a training forward and its gradients are compared number for number; the masks
themselves are checked for their statistics (rate p, values 0 and 1 / (1 - p), independence,
unbiased expectation) and for coming from torch's seeded generator. Speed itself is never asserted;
the work the model skips (tokens no head reads, padded steps) is counted in FLOPs.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import rlsuite.nn.attention as attention
from rlsuite.nn.attention import causal_attention, drop_threshold, dropout, keep_mask, residual_dropout
from rlsuite.nn.encoders import EncoderConfig, make_encoder
from rlsuite.nn.transformer import DecisionTransformer, TransformerConfig

BOX = gym.spaces.Box(-10, 10, (3,), np.float32)


def sigmas(observed: float, expected: float, n: int, variance: float) -> float:
    """How many standard errors `observed` (a mean of n draws with this variance) is from `expected`."""
    return abs(observed - expected) / math.sqrt(variance / n)


# ----------------------------------------------------------------------------- masks


def test_the_threshold_drops_each_32_bit_word_with_probability_p_to_within_2_to_the_minus_25():
    """Exact count: a word w (uniform over the 2^32 int32 values) is dropped iff float32(w) <= t."""
    for p in (0.1, 0.25, 0.5, 1 / 3, 0.9, 1e-3):
        t = np.float32(drop_threshold(p))
        lo, hi = -2 ** 31, 2 ** 31 - 1  # the largest w with float32(w) <= t, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if np.float32(mid) <= t else (lo, mid - 1)
        p_eff = (lo + 2 ** 31 + 1) / 2 ** 32
        assert abs(p_eff - p) <= 2 ** -25, (p, p_eff)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_rate_values_and_independence(p):
    n = 2_000_001  # odd: the last 64-bit draw is used for one element
    torch.manual_seed(0)
    m = keep_mask((n,), p)
    assert m.shape == (n,) and m.dtype == torch.float32
    kept = m != 0
    values = torch.unique(m)
    assert len(values) == 2 and values[0] == 0 and values[1].item() == pytest.approx(1 / (1 - p), rel=1e-7)
    dropped = 1 - kept.double().mean().item()
    assert sigmas(dropped, p, n, p * (1 - p)) < 5
    # the two words of one draw, and neighbouring draws, are independent: P(both dropped) = p^2
    pairs = ~kept[: n - 1].view(-1, 2)
    both = (pairs[:, 0] & pairs[:, 1]).double().mean().item()
    assert sigmas(both, p * p, len(pairs), p * p * (1 - p * p)) < 5
    shifted = (~kept[1:-1:2] & ~kept[2::2]).double().mean().item()
    assert sigmas(shifted, p * p, n // 2, p * p * (1 - p * p)) < 5
    unscaled = keep_mask((1000,), p, scale=False)
    assert set(torch.unique(unscaled).tolist()) <= {0.0, 1.0}


def test_masks_come_from_torchs_seeded_generator():
    torch.manual_seed(3)
    a = keep_mask((4, 1001), 0.1)
    torch.manual_seed(3)
    b = keep_mask((4, 1001), 0.1)
    assert torch.equal(a, b)  # the same seed, the same mask
    torch.manual_seed(4)
    assert not torch.equal(a, keep_mask((4, 1001), 0.1))
    torch.manual_seed(3)
    before = torch.get_rng_state()
    keep_mask((10,), 0.1)
    assert not torch.equal(before, torch.get_rng_state())  # it consumed torch's default stream
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(keep_mask((500,), 0.3, generator=g1), keep_mask((500,), 0.3, generator=g2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_rate_values_and_expectation(dtype):
    p, draws = 0.1, 4000
    torch.manual_seed(0)
    x = (torch.randn(256) + 2.0).to(dtype)
    assert dropout(x, p, training=False) is x and dropout(x, 0.0, training=True) is x
    outs = torch.stack([dropout(x, p, training=True) for _ in range(draws)]).double()
    zero = outs == 0
    frac = zero.double().mean().item()
    assert sigmas(frac, p, zero.numel(), p * (1 - p)) < 5
    expected = (x.double() / (1 - p)).expand_as(outs)
    rounding = 0.0 if dtype == torch.float32 else 2.0 ** -8  # bfloat16 rounds the kept x / (1 - p)
    torch.testing.assert_close(torch.where(zero, expected, outs), expected, rtol=max(1e-6, rounding), atol=0)
    # E[dropout(x)] = x: the mean of the draws is within 5 standard errors of x, element by element
    se = x.double().abs() * math.sqrt(p / (1 - p) / draws)
    assert ((outs.mean(0) - x.double()).abs() <= 5 * se + rounding * x.double().abs()).all()


def test_residual_dropout_is_x_plus_dropout_of_h():
    p, draws = 0.1, 3000
    drop = attention.Dropout(p)
    torch.manual_seed(1)
    x, h = torch.randn(64), torch.randn(64)
    outs = torch.stack([residual_dropout(x, h, drop) for _ in range(draws)]).double()
    branch = outs - x.double()
    zero = branch.abs() < 1e-6
    assert sigmas(zero.double().mean().item(), p, zero.numel(), p * (1 - p)) < 5
    torch.testing.assert_close(torch.where(zero, h.double() / (1 - p), branch), (h.double() / (1 - p)).expand_as(outs),
                               rtol=1e-5, atol=1e-6)
    se = h.double().abs() * math.sqrt(p / (1 - p) / draws)
    assert ((outs.mean(0) - (x + h).double()).abs() <= 5 * se + 1e-7).all()
    drop.eval()
    assert torch.equal(residual_dropout(x, h, drop), x + h)


# ----------------------------------------------------------------------------- attention


def reference_attention(q, k, v, positions, mask=None):
    """float64 from the definition: q (B, nq, H, d_h), k, v (B, n, H, d_h); mask (H, B, nq, n) or None."""
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))  # (B, H, *, d_h)
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    n = k.shape[2]
    allowed = torch.arange(n)[None, :] <= torch.as_tensor(positions)[:, None]
    probs = torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1)
    if mask is not None:
        probs = probs * mask.double().transpose(0, 1)
    return (probs @ v).transpose(1, 2)  # (B, nq, H, d_h)


def attention_inputs(dtype, subset, b=3, n=9, heads=2, dh=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    if subset:
        positions = (1, 4, 7, 8)
        q = torch.randn(b, len(positions), heads, dh, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
        kv = torch.randn(b, n, 2, heads, dh, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
        return (q, kv), (q, kv[:, :, 0], kv[:, :, 1]), positions
    qkv = torch.randn(b, n, 3, heads, dh, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    return (qkv, None), (qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]), tuple(range(n))


@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_without_dropout_equals_the_definition(dtype, subset):
    """Evaluation and p = 0 (torch's SDPA): equal to the float64 reference, 1e-5 in float32."""
    (a, b), (q, k, v), positions = attention_inputs(dtype, subset)
    ref = reference_attention(q, k, v, positions)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for training, p in ((False, 0.1), (True, 0.0)):
        y = causal_attention(a, b, p, training, positions if subset else None)
        assert y.shape == ref.shape and y.dtype == dtype
        torch.testing.assert_close(y.double(), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_with_dropout_equals_the_definition_with_its_mask(dtype, subset):
    """Training with dropout (the hand-written CPU path): output and gradients equal the float64
    reference given the same mask (re-drawn from the same seed)."""
    p = 0.3
    (a, b), (q, k, v), positions = attention_inputs(dtype, subset)
    heads, batch = q.shape[2], q.shape[0]
    torch.manual_seed(5)
    y = causal_attention(a, b, p, True, positions if subset else None)
    torch.manual_seed(5)
    kept = keep_mask((heads, batch, len(positions), k.shape[1]), p) != 0
    assert kept.any() and not kept.all()
    ref = reference_attention(q, k, v, positions, kept.double() / (1 - p))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y.double(), ref, atol=tol, rtol=tol)
    leaves = [t for t in (a, b) if t is not None]
    gy = torch.randn(ref.shape, dtype=torch.float64)
    got = torch.autograd.grad((y.double() * gy).sum(), leaves)
    want = torch.autograd.grad((ref * gy).sum(), leaves)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w.double(), atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize("subset", [False, True])
def test_attention_with_dropout_under_bf16_autocast(subset):
    """bfloat16 autocast (train.precision=bf16): bf16 matrix products, float32 softmax; close to
    the float64 reference with the same mask, and gradients reach the bf16 inputs."""
    p = 0.2
    (a, b), (q, k, v), positions = attention_inputs(torch.float32, subset, b=4, n=12, heads=2, dh=8)
    torch.manual_seed(7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = causal_attention(a, b, p, True, positions if subset else None)
    assert y.dtype == torch.bfloat16
    torch.manual_seed(7)
    kept = keep_mask((q.shape[2], q.shape[0], len(positions), k.shape[1]), p) != 0
    ref = reference_attention(q, k, v, positions, kept.double() / (1 - p))
    torch.testing.assert_close(y.double(), ref, atol=5e-2, rtol=5e-2)
    y.float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (a, b) if t is not None)


def test_attention_dropout_zeroes_probabilities_at_rate_p_and_is_unbiased():
    """With one-hot values (V = I) the output row is the dropped attention row itself: inside the
    causal triangle a fraction p is zero and the rest is softmax / (1 - p); above it all zero; the
    mean over draws is the no-dropout output."""
    p, b, n, heads = 0.25, 400, 8, 2
    torch.manual_seed(0)
    qkv = torch.randn(b, n, 3, heads, n)
    qkv[:, :, 2] = torch.eye(n)[None, :, None, :]  # value of key j = e_j (d_h = n)
    rows = causal_attention(qkv, None, p, True)  # (B, n, H, n): query i's dropped probabilities
    probs = causal_attention(qkv, None, p, False)  # no dropout: the softmax rows
    inside = torch.tril(torch.ones(n, n, dtype=torch.bool))[None, :, None, :].expand_as(rows)
    assert (rows[~inside] == 0).all() and (probs[~inside] == 0).all()
    zero = rows[inside] == 0
    assert sigmas(zero.double().mean().item(), p, zero.numel(), p * (1 - p)) < 5
    torch.testing.assert_close(rows[inside][~zero], probs[inside][~zero] / (1 - p), rtol=1e-5, atol=1e-7)
    draws = 300
    mean = sum(causal_attention(qkv[:20], None, p, True).double() for _ in range(draws)) / draws
    se = probs[:20].double() * math.sqrt(p / (1 - p) / draws)
    assert ((mean - probs[:20].double()).abs() <= 5 * se + 1e-6).all()


# ----------------------------------------------------------------------------- the model


def make_model(returns="continuous", n_layer=2, dropout_p=0.1, seed=0, context=5):
    torch.manual_seed(seed)
    cfg = TransformerConfig(context=context, embed_dim=16, n_layer=n_layer, n_head=2, dropout=dropout_p,
                            max_timestep=40, returns=returns, return_min=-3, return_max=12)
    return DecisionTransformer(cfg, make_encoder(EncoderConfig(kind="mlp", hidden=(8,)), BOX), 3)


def make_batch(b=4, k=5, seed=1, lengths=(5, 2, 4, 1)):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(b, k, 3, generator=g)
    actions = torch.randint(0, 3, (b, k), generator=g)
    rtg = torch.randint(-3, 12, (b, k), generator=g).float()
    steps = torch.randint(0, 45, (b, k), generator=g)  # some beyond the table: clamped
    mask = torch.arange(k)[None, :] < torch.tensor(lengths)[:, None]
    return obs, actions, rtg, steps, mask


class MaskRecorder:
    """Records every mask `keep_mask` draws (in order) while active, as the factor it stands for:
    float64, 0 or 1 / (1 - p) (attention applies an unscaled mask's 1 / (1 - p) in its products)."""

    def __init__(self, monkeypatch):
        self.masks: list[torch.Tensor] = []
        real = attention.keep_mask

        def recording(shape, p, *args, **kwargs):
            m = real(shape, p, *args, **kwargs)
            self.masks.append((m != 0).double() / (1 - p))
            return m
        monkeypatch.setattr(attention, "keep_mask", recording)


def reference_forward(model, obs, actions, rtg, steps, step_mask=None, masks=None, params=None):
    """The Decision Transformer in float64 from the definition, over the whole (B, 3K) window.

    `masks`: the model's dropout masks in the order it drew them (None: no dropout), laid out as the
    model draws them: over the real steps only when it skipped padding (`step_mask`), over the tokens
    the last block computes there. `params`: float64 leaves by state-dict name (made if None)."""
    cfg, b, k = model.cfg, *actions.shape
    d, heads = cfg.embed_dim, cfg.n_head
    P = params if params is not None else {n: v.detach().double() for n, v in model.named_parameters()}
    masks = list(masks) if masks is not None else None
    real = step_mask.reshape(-1) if step_mask is not None else torch.ones(b * k, dtype=torch.bool)
    read = (0, 1) if cfg.returns == "bins" else (1,)

    def steps_mask(m, positions=(0, 1, 2)):  # (S, T, d) over the real steps -> (B, 3K, d), ones elsewhere
        full = torch.ones(b * k, 3, d, dtype=torch.float64)
        full[real.nonzero().squeeze(1)[:, None], torch.tensor(positions)[None, :]] = m.double()
        return full.view(b, 3 * k, d)

    def linear(x, name):
        return x @ P[name + ".weight"].T + P[name + ".bias"]

    def layer_norm(x, name):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * P[name + ".weight"] + P[name + ".bias"]

    features = torch.relu(linear(obs.double().reshape(b * k, -1), "encoder.net.1"))  # the MLP encoder, hidden (8,)
    s = linear(features, "obs_embed").view(b, k, d)
    if cfg.returns == "bins":
        r = P["return_embed.weight"][model.return_bins(rtg)]
    else:
        r = linear((rtg.double() * cfg.return_scale)[..., None], "return_embed")
    a = P["action_embed.weight"][actions]
    t = P["timestep_embed.weight"][steps.clamp(0, cfg.max_timestep - 1)]
    first, second = (s, r) if cfg.returns == "bins" else (r, s)
    x = (torch.stack([first, second, a], 2) + t[:, :, None]).reshape(b, 3 * k, d)
    if masks is not None:
        x = x * steps_mask(masks.pop(0))
    n = 3 * k
    causal = torch.arange(n)[None, :] <= torch.arange(n)[:, None]
    for i in range(cfg.n_layer):
        pre = f"blocks.{i}."
        last = i == cfg.n_layer - 1
        h = layer_norm(x, pre + "ln1")
        q, kk, v = linear(h, pre + "attn.qkv").view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        scores = (q @ kk.transpose(-1, -2) / math.sqrt(d // heads)).masked_fill(~causal, float("-inf"))
        probs = torch.softmax(scores, -1)
        if masks is not None:
            m = masks.pop(0).double().transpose(0, 1)  # (B, H, nq, n)
            if last:  # the model's queries: the read positions of every step
                full = torch.ones(b, heads, n, n, dtype=torch.float64)
                rows = torch.tensor([3 * j + r for j in range(k) for r in read])
                full[:, :, rows] = m
                m = full
            probs = probs * m
        y = linear((probs @ v).transpose(1, 2).reshape(b, n, d), pre + "attn.proj")
        if masks is not None:
            y = y * steps_mask(masks.pop(0), read if last else (0, 1, 2))
        x = x + y
        hidden = linear(layer_norm(x, pre + "ln2"), pre + "mlp.0")
        hidden = linear(0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2))), pre + "mlp.2")
        if masks is not None:
            hidden = hidden * steps_mask(masks.pop(0), read if last else (0, 1, 2))
        x = x + hidden
    assert not masks, "the model drew masks the reference did not use"
    h = layer_norm(x, "ln_f").view(b, k, 3, d)
    out = {"action": linear(h[:, :, 1], "action_head")}
    if cfg.returns == "bins":
        out["return"] = linear(h[:, :, 0], "return_head")
    return out


@pytest.mark.parametrize("returns", ["continuous", "bins"])
@pytest.mark.parametrize("n_layer", [1, 3])
def test_evaluation_equals_the_reference_and_padding_only_zeroes_padded_steps(returns, n_layer):
    model = make_model(returns, n_layer).eval()
    obs, actions, rtg, steps, mask = make_batch()
    ref = reference_forward(model, obs, actions, rtg, steps)
    with torch.no_grad():
        dense = model(obs, actions, rtg, steps)
        packed = model(obs, actions, rtg, steps, mask)
    for key in ref:
        torch.testing.assert_close(dense[key].double(), ref[key], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(packed[key][mask].double(), ref[key][mask], atol=1e-5, rtol=1e-5)
        assert (packed[key][~mask] == 0).all()  # padded steps are not computed
        assert packed[key].shape == dense[key].shape


@pytest.mark.parametrize("returns", ["continuous", "bins"])
@pytest.mark.parametrize("skip_padding", [True, False])
def test_training_step_with_dropout_equals_the_reference_with_the_same_masks(returns, skip_padding, monkeypatch):
    """A training forward (dropout 0.1 everywhere, padding skipped or not) and the gradients of the
    masked cross-entropy equal the float64 definition replaying the model's own masks."""
    model = make_model(returns, n_layer=3).train()
    model.skip_padding = skip_padding
    obs, actions, rtg, steps, mask = make_batch()
    recorder = MaskRecorder(monkeypatch)
    torch.manual_seed(11)
    out = model(obs, actions, rtg, steps, mask)
    assert len(recorder.masks) == 1 + 3 * model.cfg.n_layer  # embeddings, then attention and 2 residuals per block
    if not skip_padding:  # the window is computed whole: masks over every step
        assert recorder.masks[0].shape[0] == mask.numel()
    params = {n: v.detach().double().requires_grad_() for n, v in model.named_parameters()}
    ref = reference_forward(model, obs, actions, rtg, steps, mask if skip_padding else None, recorder.masks, params)

    def loss(o):
        total = F.cross_entropy(o["action"][mask], actions[mask], reduction="sum")
        if "return" in o:
            total = total + F.cross_entropy(o["return"][mask], model.return_bins(rtg)[mask], reduction="sum")
        return total / mask.sum()

    for key in ref:
        torch.testing.assert_close(out[key][mask].double(), ref[key][mask], atol=1e-5, rtol=1e-5)
    loss(out).backward()
    loss(ref).backward()
    for name, p in model.named_parameters():
        want = params[name].grad
        got = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(got.double(), want if want is not None else torch.zeros_like(got.double()),
                                   atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("returns", ["continuous", "bins"])
def test_torchs_own_ops_where_the_cpu_paths_do_not_apply(returns, monkeypatch):
    """On a GPU and under torch.compile the model runs torch's SDPA and F.dropout: the same
    function (evaluation equals the reference; training without dropout has the reference's
    gradients), and training with dropout runs."""
    monkeypatch.setattr(attention, "_fast", lambda x: False)
    model = make_model(returns, n_layer=2).eval()
    obs, actions, rtg, steps, mask = make_batch()
    ref = reference_forward(model, obs, actions, rtg, steps)
    with torch.no_grad():
        out = model(obs, actions, rtg, steps, mask)
    for key in ref:
        torch.testing.assert_close(out[key][mask].double(), ref[key][mask], atol=1e-5, rtol=1e-5)
    model = make_model(returns, n_layer=2, dropout_p=0.0).train()
    params = {n: v.detach().double().requires_grad_() for n, v in model.named_parameters()}
    ref = reference_forward(model, obs, actions, rtg, steps, params=params)
    model(obs, actions, rtg, steps, mask)["action"][mask].sum().backward()
    ref["action"][mask].sum().backward()
    for name, p in model.named_parameters():
        want = params[name].grad if params[name].grad is not None else torch.zeros_like(params[name])
        got = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-4, msg=name)
    model = make_model(returns, n_layer=2, dropout_p=0.1).train()
    model(obs, actions, rtg, steps, mask)["action"][mask].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_same_seed_same_training_forward_and_another_seed_differs():
    model = make_model().train()
    obs, actions, rtg, steps, mask = make_batch()
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outs.append(model(obs, actions, rtg, steps, mask)["action"].detach())
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_bf16_autocast_training_is_close_to_float32_and_trains():
    model = make_model(n_layer=2, dropout_p=0.0).train()
    obs, actions, rtg, steps, mask = make_batch()
    with torch.no_grad():
        fp32 = model(obs, actions, rtg, steps, mask)["action"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(obs, actions, rtg, steps, mask)["action"]
    torch.testing.assert_close(bf16.float()[mask], fp32[mask], atol=5e-2, rtol=5e-2)
    model = make_model(n_layer=2, dropout_p=0.1).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(obs, actions, rtg, steps, mask)["action"]
    F.cross_entropy(out[mask].float(), actions[mask]).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_a_wrapped_or_hooked_qkv_is_called_as_a_module():
    """The last block computes queries of the read tokens only with a plain Linear; a wrapped one
    (LoRA) or one with hooks is called on all tokens, and the result is the same."""
    model = make_model(n_layer=1).eval()
    obs, actions, rtg, steps, mask = make_batch()
    with torch.no_grad():
        plain = model(obs, actions, rtg, steps, mask)["action"]
    calls = []
    model.blocks[0].attn.qkv.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        hooked = model(obs, actions, rtg, steps, mask)["action"]
    assert calls and torch.allclose(plain, hooked, atol=1e-6)


def test_state_dict_layout_is_unchanged_and_an_old_checkpoint_loads():
    """The parameters keep their pre-existing names and shapes (no fused or renamed weights), so
    checkpoints written before the fast paths load strictly."""
    old_layout = {  # a 1-layer d 16 model with returns 'continuous', as written before the fast paths
        "encoder.net.1.weight": (8, 3), "encoder.net.1.bias": (8,), "obs_embed.weight": (16, 8),
        "obs_embed.bias": (16,), "action_embed.weight": (4, 16), "return_embed.weight": (16, 1),
        "return_embed.bias": (16,), "timestep_embed.weight": (40, 16), "blocks.0.ln1.weight": (16,),
        "blocks.0.ln1.bias": (16,), "blocks.0.ln2.weight": (16,), "blocks.0.ln2.bias": (16,),
        "blocks.0.attn.qkv.weight": (48, 16), "blocks.0.attn.qkv.bias": (48,),
        "blocks.0.attn.proj.weight": (16, 16), "blocks.0.attn.proj.bias": (16,),
        "blocks.0.mlp.0.weight": (64, 16), "blocks.0.mlp.0.bias": (64,), "blocks.0.mlp.2.weight": (16, 64),
        "blocks.0.mlp.2.bias": (16,), "ln_f.weight": (16,), "ln_f.bias": (16,), "action_head.weight": (3, 16),
        "action_head.bias": (3,)}
    model = make_model(n_layer=1)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == old_layout
    torch.manual_seed(5)
    old = {k: torch.randn(shape) for k, shape in old_layout.items()}
    model.load_state_dict(old, strict=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in old.items())


# ----------------------------------------------------------------------------- skipped work


def matmul_flops(model, batch, backward=True) -> int:
    obs, actions, rtg, steps, mask = batch
    with FlopCounterMode(display=False) as counter:
        out = model(obs, actions, rtg, steps, mask)
        if backward:
            out["action"][mask].float().sum().backward()
    return counter.get_total_flops()


def test_the_last_block_and_padded_steps_are_not_computed():
    """FLOPs of a training step (dropout 0.1): the last block computes only the tokens a head reads
    (here 1 of 3), and with padding the blocks run on the real steps only."""
    b, k, lengths = 8, 20, (20, 10, 5, 15, 20, 2, 8, 4)
    full, padded = make_batch(b, k, lengths=(k,) * b), make_batch(b, k, lengths=lengths)
    flops = {}
    for n_layer in (1, 2, 3):
        model = make_model(n_layer=n_layer, context=k).train()
        model.skip_padding = False
        flops[n_layer] = matmul_flops(model, padded)
    block = flops[3] - flops[2]  # one full block (the same for every block but the last)
    assert flops[2] - flops[1] == block
    assert flops[1] < 0.5 * block  # the last block (and embeddings, heads): under half a block
    model.skip_padding = True
    assert matmul_flops(model, full) == flops[3]  # no padding: the whole window either way
    # attention still runs over the window's layout (B, H, 3K, 3K): 12 B H n^2 d_h per full block
    # (QK^T and PV, forward and backward), a third of that in the last block
    heads, dh, n = model.cfg.n_head, model.cfg.embed_dim // model.cfg.n_head, 3 * k
    attention_flops = 12 * b * heads * n * n * dh * (2 + 1 / 3)
    real = sum(lengths) / (b * k)
    skipped = matmul_flops(model, padded)
    assert skipped <= real * (flops[3] - attention_flops) + attention_flops + 0.01 * flops[3]
