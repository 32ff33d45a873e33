"""Gradual magnitude pruning: schedule, ERK targets, masks, hook, target net, resume."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlsuite import config
from rlsuite.agents.dqn import DQN, DQNConfig
from rlsuite.nn.encoders import EncoderConfig, make_encoder
from rlsuite.nn.pruning import (GMPConfig, MagnitudePruner, erk_densities, gmp_sparsity_at, layer_sparsities,
                                magnitude_mask, prunable_parameters)
from rlsuite.loops.online import advance, build_session, restore_checkpoint, save_checkpoint
from tests.conftest import TINY

ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


@pytest.mark.parametrize("progress, expected", [(0, 0), (0.1, 0.257), (0.25, 0.549), (0.5, 0.831),
                                                (0.75, 0.935), (1.0, 0.95)])
def test_schedule_matches_the_spec_table(progress, expected):
    assert gmp_sparsity_at(progress, 0.95) == pytest.approx(expected, abs=5e-4)


def nature_q_network(actions: int = 18) -> torch.nn.Module:
    return DQN(DQNConfig(encoder=EncoderConfig(kind="nature")), ATARI, gym.spaces.Discrete(actions)).online


def test_erk_targets_for_nature_cnn_at_95_percent_match_the_spec():
    params = prunable_parameters(nature_q_network())
    shapes = [tuple(p.shape) for p in params.values()]
    sparsities = [1 - d for d in erk_densities(shapes, 0.95)]
    # spec §1.1.3: first conv 0.88, convs (0.94, 0.93), dense 0.956, Q-head dense
    assert sparsities == pytest.approx([0.878, 0.939, 0.930, 0.956, 0.0], abs=2e-3)
    kept = sum((1 - s) * np.prod(shape) for s, shape in zip(sparsities, shapes))
    assert kept == pytest.approx(0.05 * sum(np.prod(s) for s in shapes), rel=1e-9)


def test_prunable_set_is_every_kernel_never_a_bias_and_respects_exclude():
    net = nature_q_network()
    names = list(prunable_parameters(net))
    assert names == ["encoder.convs.0.weight", "encoder.convs.2.weight", "encoder.convs.4.weight",
                     "encoder.dense.weight", "head.weight"]
    assert list(prunable_parameters(net, ("head.*", "encoder.convs.0.*"))) == names[1:4]


def test_magnitude_mask_keeps_the_largest_and_breaks_ties_by_index():
    w = torch.tensor([[0.5, -3.0, 1.0], [1.0, 0.0, 2.0]])
    assert magnitude_mask(w, 0.5).flatten().tolist() == [False, True, True, False, False, True]
    assert magnitude_mask(w, 0.99).sum() == 1  # at least one weight survives


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_achieved_sparsity_equals_target_after_each_mask_update(distribution):
    torch.manual_seed(0)
    net = nature_q_network(6)
    pruner = MagnitudePruner(GMPConfig(sparsity=0.9, update_freq=10, distribution=distribution), net, total_updates=100)
    shapes = [tuple(p.shape) for p in pruner.params.values()]
    for _ in range(100):
        with torch.no_grad():  # a stand-in optimizer step: perturb every weight
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        pruner()
        if pruner.is_mask_update(pruner.count):
            target = pruner.target_at(pruner.count)
            # each layer: its final (s_F = 0.9) target times the schedule factor target / s_F
            finals = layer_sparsities(shapes, 0.9, distribution)
            for param, final in zip(pruner.params.values(), finals):
                want = final * target / 0.9
                zeros = int((param == 0).sum())
                assert abs(zeros - want * param.numel()) <= 1  # within one weight
            report = pruner.report()
            assert abs(report["sparsity/overall"] - target) * sum(np.prod(s) for s in shapes) <= len(shapes)
    assert pruner.report()["sparsity/overall"] == pytest.approx(0.9, abs=1e-4)  # reached s_F at 80%


def gmp_session(run_dir: Path):
    overrides = TINY + ["agent.gmp.sparsity=0.9", "agent.gmp.update_freq=50", "train.total_steps=3000",
                        "train.save_replay=true", "agent.encoder.hidden=64,64"]
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", overrides)
    session = build_session(cfg, run_dir)
    session.obs, _ = session.env.reset(seed=cfg.train.seed)
    return session


def assert_pruned_weights_zero(session) -> None:
    pruner = session.agent.pruner
    for name, param in pruner.params.items():
        assert torch.all(param[~pruner.masks[name]] == 0), name


def test_pruned_weights_are_zero_after_every_step_target_is_sparse_and_resume_is_exact(tmp_path):
    session = gmp_session(tmp_path / "run")
    while session.step < 1500:
        advance(session)
        if session.agent.pruner.current_sparsity > 0:
            assert_pruned_weights_zero(session)
    assert session.agent.pruner.current_sparsity > 0.3
    session.agent.sync_target()
    target = dict(session.agent.target.named_parameters())
    for name, mask in session.agent.pruner.masks.items():
        assert torch.all(target[name][~mask] == 0)  # the target copies masked weights
    save_checkpoint(session)
    resumed = gmp_session(tmp_path / "run")
    restore_checkpoint(resumed, lambda _: None)
    assert resumed.agent.pruner.count == session.agent.pruner.count
    for name in session.agent.pruner.masks:
        assert torch.equal(resumed.agent.pruner.masks[name], session.agent.pruner.masks[name])
    while session.step < 3000:
        a, b = advance(session), advance(resumed)
        assert np.array_equal(a.actions, b.actions)
        assert_pruned_weights_zero(resumed)
    assert resumed.agent.pruner.report()["sparsity/overall"] == pytest.approx(0.9, abs=1e-3)


def test_mask_gradients_zeroes_gradients_and_adam_moments():
    torch.manual_seed(0)
    agent = DQN(DQNConfig(encoder=EncoderConfig(kind="mlp"), gmp=GMPConfig(sparsity=0.5, start=0, end=0, distribution="uniform",
                                                                           update_freq=1, mask_gradients=True)),
                gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    agent.plan(total_env_steps=agent.cfg.learning_starts + 400)
    for _ in range(3):
        loss = agent.online(torch.randn(8, 4)).pow(2).mean()
        agent.optimizer.zero_grad()
        loss.backward()
        agent.optimizer.step()
        agent.pruner()
    for name, param in agent.pruner.params.items():
        pruned = ~agent.pruner.masks[name]
        assert pruned.any() and torch.all(param.grad[pruned] == 0)
        state = agent.optimizer.state[param]
        assert torch.all(state["exp_avg"][pruned] == 0) and torch.all(state["exp_avg_sq"][pruned] == 0)


def erk_by_definition(shapes: list[tuple[int, ...]], sparsity: float) -> list[float]:
    """ERK written out independently of rlsuite (JaxPruner's get_sparsities_erdos_renyi with
    include_kernel): density_l = eps * sum(all dims, kernel h and w included) / prod(dims), eps
    solved so the kept weights total (1 - sparsity) of all; a layer whose density would pass 1 is
    made dense and eps solved again over the rest."""
    dense: set[int] = set()
    while True:
        rhs = sum((1 - sparsity) * np.prod(s) for i, s in enumerate(shapes) if i not in dense)
        rhs -= sum(sparsity * np.prod(s) for i, s in enumerate(shapes) if i in dense)
        raw = {i: np.sum(s) / np.prod(s) for i, s in enumerate(shapes) if i not in dense}
        eps = rhs / sum(raw[i] * np.prod(shapes[i]) for i in raw)
        over = [i for i in raw if eps * raw[i] > 1]
        if not over:
            return [0.0 if i in dense else 1 - eps * raw[i] for i in range(len(shapes))]
        dense.update(over)


def atari_q_model(kind: str, width: int = 1) -> torch.nn.Module:
    """make_encoder on Atari frames plus a 6-action linear head: a Q-network's prunable layers."""
    encoder = make_encoder(EncoderConfig(kind=kind, width=width), ATARI)
    return torch.nn.Sequential(encoder, torch.nn.Linear(encoder.output_dim, 6))


@pytest.mark.parametrize("kind,width", [("nature", 1), ("impala", 3)])
def test_each_layer_follows_the_cubic_schedule_towards_its_own_final_target(kind, width):
    """JaxPruner: s_l(t) = s_l^F (1 - (1 - p)^3) with s_l^F solved once at s_F; at p = 0.25 every
    layer is at 0.578125 s_l^F (re-solving ERK at the current overall target left the first
    convs dense until late in the window)."""
    torch.manual_seed(0)
    model = atari_q_model(kind, width)
    # start 0, end 1 of 400 updates: the mask update at update 99 sees p = (99 + 1) / 400 = 0.25
    pruner = MagnitudePruner(GMPConfig(sparsity=0.95, start=0.0, end=1.0, update_freq=99), model, total_updates=400)
    for _ in range(99):
        pruner()
    assert pruner.current_sparsity == pytest.approx(0.95 * 0.578125)
    finals = erk_by_definition([tuple(p.shape) for p in pruner.params.values()], 0.95)
    for (name, param), final in zip(pruner.params.items(), finals):
        zeros = int((param == 0).sum())
        assert abs(zeros - 0.578125 * final * param.numel()) <= 1, name
    if kind == "nature":
        assert pruner.report()["sparsity/0.convs.0.weight"] > 0.5  # the first conv: 0 before the fix


def test_a_pruned_weight_never_revives():
    """Masks rank |w x old mask|: a pruned weight that the optimizer moved (Adam's moments stay dense)
    stays out even when it is now the largest weight of its layer."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8)
    pruner = MagnitudePruner(GMPConfig(sparsity=0.9, distribution="uniform"), layer, total_updates=100)
    pruner.update_masks(0.5)
    pruner.apply()
    pruned = (~pruner.masks["weight"]).nonzero()[0].tolist()
    with torch.no_grad():
        layer.weight[tuple(pruned)] = 1e6  # a stand-in optimizer step moved it far from zero
    pruner.update_masks(0.8)
    assert not pruner.masks["weight"][tuple(pruned)]
    assert int(pruner.masks["weight"].sum()) == round(128 * 0.2)
    pruner.apply()
    assert layer.weight[tuple(pruned)] == 0
