"""Structured feed-forward layers and self-guided training (Wei, Moalla, Pascanu, Gulcehre, arXiv
2406.16450; rlsuite.nn.structured, rlsuite.nn.self_guided) in the Decision Transformer.

Every map is held to a dense matrix built here from its factor weights by the definitions (block
diagonals and stride permutations written out index by index), never to rlsuite's own
`dense_matrix()`; counts to the formulas worked out by hand; the alpha schedules to values by hand.
"""
from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

from rlsuite import config
from rlsuite.agents.dt import DT
from rlsuite.cli import main
from rlsuite.loops import offline
from rlsuite.nn.self_guided import SelfGuided, guide_alpha
from rlsuite.nn.structured import BlockDense, BlockShuffle, LowRank
from rlsuite.run import checkpoint


def block_diag(blocks: torch.Tensor) -> torch.Tensor:
    """(k, a, b) -> the (k a, k b) block-diagonal matrix, written out."""
    k, a, b = blocks.shape
    out = torch.zeros(k * a, k * b, dtype=blocks.dtype)
    for j in range(k):
        out[j * a:(j + 1) * a, j * b:(j + 1) * b] = blocks[j]
    return out


def stride_permutation(rows: int, cols: int) -> torch.Tensor:
    """P with (P z)[j rows + i] = z[i cols + j]: z read as a (rows, cols) matrix row by row, transposed."""
    p = torch.zeros(rows * cols, rows * cols, dtype=torch.float64)
    for i in range(rows):
        for j in range(cols):
            p[j * rows + i, i * cols + j] = 1.0
    return p


def reference_matrix(layer) -> torch.Tensor:
    """The d_out x d_in matrix of a structured layer, from its factors and the definitions."""
    v, u = layer.v.detach().double(), layer.u.detach().double()
    if isinstance(layer, LowRank):
        return u @ v
    if isinstance(layer, BlockDense):
        return u @ block_diag(v)
    # BlockShuffle: second-stage block j reads first-stage outputs j, j + k, ... (the m outputs read as
    # (q, k) and transposed), and its output i lands at i k + j.
    k, s, q = u.shape
    return stride_permutation(k, s) @ block_diag(u) @ stride_permutation(q, k) @ block_diag(v)


LAYERS = [
    ("lowrank", lambda g: LowRank(12, 20, 3, generator=g)),
    ("blockshuffle-wide", lambda g: BlockShuffle(8, 32, 2, generator=g)),
    ("blockshuffle-narrow", lambda g: BlockShuffle(24, 6, 3, generator=g)),
    ("blockshuffle-2", lambda g: BlockShuffle(12, 12, 2, generator=g)),
    ("blockdense", lambda g: BlockDense(12, 20, 8, 4, generator=g)),
]


@pytest.mark.parametrize("name, build", LAYERS, ids=[n for n, _ in LAYERS])
def test_outputs_equal_the_explicit_dense_matrix(name, build):
    layer = build(torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        layer.bias.normal_()  # a nonzero bias, added once as nn.Linear adds it
    w = reference_matrix(layer)
    x = torch.randn(2, 5, layer.in_features, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ w.t() + layer.bias, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.dense_matrix(), w, rtol=1e-10, atol=1e-12)
    k, p = getattr(layer, "blocks", 1), layer.in_features // getattr(layer, "blocks", 1)
    if name.startswith("blockshuffle") and (layer.middle // k) % k == 0:
        # k | m / k: the permutation mixes, every output reads every input block
        reach = w.abs().reshape(layer.out_features, k, p).sum(-1)
        assert (reach > 0).all()


def test_parameter_and_flop_counts_match_the_formulas():
    g = torch.Generator().manual_seed(0)
    # by hand: LowRank 3 (12 + 20) + 20; BlockShuffle(8 -> 32, k 4): middle 8, v 4x2x2, u 4x8x2, + 32;
    # BlockDense(12 -> 20, r 8, k 4): v 4x2x3, u 20x8, + 20.
    cases = [(LowRank(12, 20, 3, generator=g), 116, 2 * 3 * 32, LowRank.count(12, 20, 3)),
             (BlockShuffle(8, 32, 4, generator=g), 16 + 64 + 32, 2 * (16 + 64), BlockShuffle.count(8, 32, 4)),
             (BlockDense(12, 20, 8, 4, generator=g), 24 + 160 + 20, 2 * (24 + 160), BlockDense.count(12, 20, 8, 4))]
    for layer, params, flops, formula in cases:
        assert sum(p.numel() for p in layer.parameters()) == layer.parameter_count() == params == formula
        assert layer.flop_count() == flops


def test_inits_are_the_papers():
    """LowRank: the best rank-r approximation of a N(0, 0.02^2) draw, split evenly (U^T U = V V^T =
    S_r); block maps: every block orthogonal (its polar factor)."""
    layer = LowRank(10, 16, 4, generator=torch.Generator().manual_seed(3))
    draw = torch.randn(16, 10, generator=torch.Generator().manual_seed(3)) * 0.02
    a, s, bh = torch.linalg.svd(draw.double(), full_matrices=False)
    torch.testing.assert_close((layer.u @ layer.v).double(), a[:, :4] @ torch.diag(s[:4]) @ bh[:4], atol=1e-6, rtol=0)
    torch.testing.assert_close((layer.u.t() @ layer.u).double(), torch.diag(s[:4]), atol=1e-6, rtol=0)
    torch.testing.assert_close((layer.v @ layer.v.t()).double(), torch.diag(s[:4]), atol=1e-6, rtol=0)
    for block in [*BlockShuffle(8, 32, 4).v, *BlockShuffle(8, 32, 4).u, *BlockDense(12, 20, 8, 4).v]:
        small = block @ block.t() if block.shape[0] <= block.shape[1] else block.t() @ block
        torch.testing.assert_close(small, torch.eye(min(block.shape)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, build", LAYERS[::2], ids=[n for n, _ in LAYERS[::2]])
def test_self_guided_starts_unchanged_mixes_and_drops_the_guide_at_alpha_0(name, build):
    layer = build(torch.Generator().manual_seed(2)).double()
    guided = SelfGuided(layer)
    x = torch.randn(4, layer.in_features, dtype=torch.float64)
    torch.testing.assert_close(guided(x), layer(x), rtol=1e-10, atol=1e-12)  # W_g = the product: same function
    with torch.no_grad():
        guided.guide.normal_()
    guided.set_alpha(0.3)
    want = 0.3 * x @ guided.guide.t() + 0.7 * (x @ reference_matrix(layer).t()) + layer.bias
    torch.testing.assert_close(guided(x), want, rtol=1e-10, atol=1e-12)
    guided.set_alpha(0.0)
    out = guided(x)
    assert torch.equal(out, layer(x))  # alpha 0: exactly the structured map, whatever the guide holds
    out.sum().backward()
    assert guided.guide.grad is None and layer.u.grad is not None


def test_alpha_schedules_by_hand():
    assert [guide_alpha(u, 10) for u in (0, 5, 10, 12)] == [1.0, pytest.approx(0.5), 0.0, 0.0]
    assert guide_alpha(2, 10) == pytest.approx((1 + math.cos(0.2 * math.pi)) / 2) == pytest.approx(0.9045085)
    assert [guide_alpha(u, 10, "linear") for u in (0, 2, 5, 9, 10)] == pytest.approx([1.0, 0.8, 0.5, 0.1, 0.0])
    assert guide_alpha(0, 0) == 0.0  # no guided phase: never guided


def test_dense_ffn_blocks_are_plain_linear_layers_and_counts_add_up():
    """ffn=dense builds nn.Linear exactly as before; a structured model differs from it by the FFN
    formula (block 0 dense), and SGT adds one dense guide per structured layer."""
    base = ["agent.model.embed_dim=32", "agent.model.n_layer=2", "agent.model.n_head=2", "agent.model.max_timestep=64"]
    obs, act = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    count = {}
    for name, extra in [("dense", []), ("lowrank", ["agent.model.ffn=lowrank", "agent.model.ffn_rank=4"]),
                        ("sgt", ["agent.model.ffn=lowrank", "agent.model.ffn_rank=4", "agent.model.sgt_ratio=0.5"])]:
        agent = DT(config.build_run_config("dt", "CartPole-v1", base + extra).agent, obs, act)
        count[name] = agent.parameter_count()
        mlp = agent.model.blocks[0].mlp
        assert type(mlp[0]) is torch.nn.Linear and type(mlp[2]) is torch.nn.Linear
    d = 32  # block 1's FFN: dense 2 (d 4d) + 4d + d; low-rank 4 (d + 4d) twice + the same biases
    assert count["dense"] - count["lowrank"] == 2 * d * 4 * d - 2 * 4 * (5 * d)
    assert count["sgt"] - count["lowrank"] == 2 * d * 4 * d


BAD = [("agent.model.ffn_blocks=3", "agent.model.ffn=blockdiag", "ffn_blocks"),
       ("agent.model.ffn_blocks=3", "agent.model.ffn=blockdense", "ffn_blocks"),
       ("agent.model.ffn_rank=33", "agent.model.ffn=lowrank", "ffn_rank"),
       ("agent.model.sgt_ratio=0.5", "agent.model.ffn=dense", "sgt_ratio"),
       ("agent.gmp.sparsity=0.5", "agent.model.ffn=lowrank", "agent.gmp.sparsity"),
       ("agent.model.n_layer=1", "agent.model.ffn=lowrank", "ffn_first_dense")]


def test_bad_structured_settings_are_one_line_exit_2_and_no_run_dir(cartpole_datasets, tmp_path, capsys):
    data = f"{cartpole_datasets / 'expert'}"
    for i, (bad, kind, says) in enumerate(BAD):
        run_dir = tmp_path / f"bad{i}"
        args = ["train", "dt", "--dataset", data, "--steps", "2", "--run-dir", str(run_dir), "--no-progress",
                "--set", "agent.model.embed_dim=32", "--set", "agent.model.n_head=2", "--set", kind, "--set", bad]
        assert main(args) == 2, bad
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err
        assert not run_dir.exists()


TINY = ["agent.model.context=5", "agent.model.embed_dim=32", "agent.model.n_layer=2", "agent.model.n_head=2",
        "agent.model.max_timestep=512", "agent.batch_size=8", "agent.warmup_updates=2", "agent.encoder.hidden=16",
        "train.eval_episodes=1", "train.eval_num_envs=1", "train.log_every=1", "train.torch_threads=1",
        "agent.model.ffn=lowrank", "agent.model.ffn_rank=4", "agent.model.sgt_ratio=0.75", "train.eval_every=6"]


def test_exact_resume_with_lowrank_and_self_guided_training(cartpole_datasets, tmp_path, monkeypatch, capsys):
    """A 12-update run interrupted after 6 (in its guided phase, G = 9) and resumed equals the
    straight run to the bit (guides, alpha, factors, AdamW, dropout, sampler); the alpha in the
    checkpoints is the cosine schedule's by hand."""
    data = f"{cartpole_datasets / 'expert'},{cartpole_datasets / 'noisy'}"
    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["train", "dt", "--dataset", data, "--steps", "12", "--run-dir", str(tmp_path / "straight"),
                 "--no-progress", *sets]) == 0
    out = capsys.readouterr().out
    assert "ffn lowrank rank 4 (first block dense)" in out and "self-guided (cosine) for 9 updates" in out
    with monkeypatch.context() as m:  # stop after update 6, as a signal would
        m.setattr(offline.OfflineRun, "stop_now", lambda self, s: s.step == 6)
        main(["train", "dt", "--dataset", data, "--steps", "12", "--run-dir", str(tmp_path / "half"),
              "--no-progress", *sets])
    half = checkpoint.load(checkpoint.find(tmp_path / "half"))
    assert half["step"] == 6
    alpha = half["agent"]["model"]["blocks.1.mlp.0.alpha"]
    assert float(alpha) == pytest.approx((1 + math.cos(math.pi * 5 / 9)) / 2)  # set before update 5 (0-based)
    assert main(["train", "--resume", str(tmp_path / "half"), "--no-progress"]) == 0
    a = checkpoint.load(checkpoint.find(tmp_path / "straight"))["agent"]["model"]
    b = checkpoint.load(checkpoint.find(tmp_path / "half"))["agent"]["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["blocks.1.mlp.2.alpha"]) == 0.0
