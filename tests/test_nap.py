"""Normalize-and-Project: where the norms go, what the projection preserves, what it fixes."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlsuite import config
from rlsuite.agents.dqn import DQN, DQNConfig
from rlsuite.nn.encoders import EncoderConfig
from rlsuite.nn.nap import NORM_TYPES, NaPConfig
from rlsuite.nn.schedules import lr_factor
from rlsuite.loops.online import advance, build_session
from tests.conftest import TINY

SPACES = {
    "mlp": gym.spaces.Box(-1, 1, (8,), np.float32),
    "minatar": gym.spaces.Box(0, 1, (4, 10, 10), np.uint8),
    "nature": gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
    "impala": gym.spaces.Box(0, 1, (4, 10, 10), np.uint8),
}


def make_agent(kind: str, norm: str, **nap) -> DQN:
    torch.manual_seed(0)
    cfg = DQNConfig(encoder=EncoderConfig(kind=kind), nap=NaPConfig(norm=norm, **nap))
    return DQN(cfg, SPACES[kind], gym.spaces.Discrete(5))


def batch(kind: str, n: int = 16) -> torch.Tensor:
    space = SPACES[kind]
    space.seed(1)
    return torch.as_tensor(np.stack([space.sample() for _ in range(n)]))


def grow_norms(agent: DQN, x: torch.Tensor, steps: int = 20) -> None:
    """Adam steps on a loss that pushes Q-values up: the weights' norms grow, as in training."""
    opt = torch.optim.Adam(agent.online.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        (-agent.online(x).pow(2).mean()).backward()
        opt.step()


@pytest.mark.parametrize("norm", ["layer", "rms"])
@pytest.mark.parametrize("kind", ["mlp", "minatar", "nature"])
def test_projection_leaves_outputs_unchanged(kind, norm):
    agent, x = make_agent(kind, norm, project=True), batch(kind)
    grow_norms(agent, x)
    grown = agent.projector._group_norms() / agent.projector.radii
    assert float((grown - 1).abs().max()) > 0.05  # the projection has real work to do
    before = agent.online(x).detach()
    agent.projector.project()
    after = agent.online(x).detach()
    assert float((after - before).abs().max()) <= 1e-5 * float(before.abs().max())
    assert torch.allclose(agent.projector._group_norms(), agent.projector.radii, rtol=1e-5)


def test_projection_without_norms_changes_outputs():
    """The control: without normalization the same projection is not function-preserving."""
    with pytest.warns(UserWarning, match="not NaP"):
        agent = make_agent("mlp", "none", project=True)
    x = batch("mlp")
    grow_norms(agent, x)
    before = agent.online(x).detach()
    agent.projector.project()
    assert float((agent.online(x).detach() - before).abs().max()) > 1e-2 * float(before.abs().max())


def test_a_norm_before_every_relu_and_redundant_biases_dropped():
    agent = make_agent("impala", "layer", project=True)
    net = agent.online
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    norms = [m for m in net.modules() if isinstance(m, NORM_TYPES)]
    assert len(relus) == len(norms) == 14
    no_bias = sorted(n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is None)
    # Exactly the layers feeding a norm directly: the first conv of each residual body and the
    # dense layer. Convs writing into the residual stream (an addition) keep their biases.
    assert no_bias == sorted([f"encoder.convs.{s}.{b}.body.1" for s in range(3) for b in (2, 3)] + ["encoder.dense"])
    # conv maps are normalized over C, H and W together, with per-channel gain and offset
    assert isinstance(norms[0], nn.GroupNorm) and norms[0].num_groups == 1


def test_head_and_the_norm_feeding_it_are_left_free_by_default():
    agent = make_agent("mlp", "layer", project=True)
    # MLP: net.1 Linear -> net.2.0 LayerNorm -> ReLU -> net.3 Linear -> net.4.0 LayerNorm -> ReLU -> head
    assert set(agent.projector.groups) == {"encoder.net.1", "encoder.net.2.0", "encoder.net.3"}
    with_head = make_agent("mlp", "layer", project=True, project_head=True)
    assert set(with_head.projector.groups) == {"encoder.net.1", "encoder.net.2.0", "encoder.net.3",
                                               "encoder.net.4.0", "head"}


def train_session(tmp_path, extra: list[str], steps: int = 1200):
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", TINY + extra)
    s = build_session(cfg, tmp_path)
    s.obs, _ = s.env.reset(seed=1)
    head_before = s.agent.online.head.weight.detach().clone()
    while s.step < steps:
        advance(s)
    return s, head_before


def test_norms_equal_their_radii_after_training_and_the_head_moves(tmp_path):
    s, head_before = train_session(tmp_path, ["agent.nap.norm=layer", "agent.nap.project=true"])
    projector = s.agent.projector
    assert s.agent.num_updates > 300
    assert torch.allclose(projector._group_norms(), projector.radii, rtol=1e-5)
    assert not torch.equal(s.agent.online.head.weight, head_before)  # learning happened, head unconstrained
    # the target network copies the projected weights at its syncs
    assert s.agent.target.encoder.net[1].weight.norm() == pytest.approx(float(projector.radii[0]), rel=1e-4)


def test_nap_with_gmp_keeps_pruned_weights_zero_and_norms_at_radius(tmp_path):
    s, _ = train_session(tmp_path, ["agent.nap.norm=layer", "agent.nap.project=true", "agent.gmp.sparsity=0.8",
                                    "agent.gmp.update_freq=50", "train.total_steps=1200"])
    pruner, projector = s.agent.pruner, s.agent.projector
    assert s.agent.post_step_hooks == [pruner, projector]  # mask first, then project
    for name, mask in pruner.masks.items():
        weight = dict(s.agent.online.named_parameters())[name]
        assert torch.count_nonzero(weight[~mask]) == 0
    assert pruner.report()["sparsity/overall"] > 0.75
    assert torch.allclose(projector._group_norms(), projector.radii, rtol=1e-5)


@pytest.mark.parametrize("schedule,final,expected", [
    ("constant", 0.0, [1.0, 1.0, 1.0]),
    ("linear", 0.0, [1.0, 0.5, 0.0]),
    ("linear", 0.1, [1.0, 0.55, 0.1]),
    ("cosine", 0.0, [1.0, 0.5, 0.0]),
])
def test_learning_rate_schedules(schedule, final, expected):
    assert [lr_factor(p, schedule, final) for p in (0.0, 0.5, 1.0)] == pytest.approx(expected)


def test_agent_decays_its_learning_rate_over_the_run(tmp_path):
    s, _ = train_session(tmp_path, ["agent.lr_schedule=linear", "agent.lr=1e-3", "train.total_steps=1200"])
    lr = s.agent.optimizer.param_groups[0]["lr"]
    progress = (s.agent.num_updates - 1) / s.agent.total_updates
    assert lr == pytest.approx(1e-3 * (1 - progress)) and lr < 1e-4


def test_update_probe_reports_per_layer_effective_lr_and_grad_norm(tmp_path):
    s, _ = train_session(tmp_path, [], steps=600)
    s.agent.diagnostics()  # arms the probe
    advance(s)
    while s.agent.probe.armed:
        advance(s)
    report = s.agent.diagnostics()
    for layer in ("encoder.net.1", "encoder.net.3", "head"):
        assert report[f"plasticity/weight_norm/{layer}"] > 0
        assert 0 < report[f"plasticity/effective_lr/{layer}"] < 0.1  # one Adam step turns a layer a little
        assert report[f"plasticity/grad_norm/{layer}"] > 0
    assert report["plasticity/grad_norm"] > 0
