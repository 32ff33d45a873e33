"""Plasticity diagnostics against hand-made cases."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlsuite.nn.diagnostics import (dormant_fraction, parameter_norm, plasticity_report, relu_layers, srank,
                                    unit_scores)
from rlsuite.nn.encoders import EncoderConfig, make_encoder
from rlsuite.nn.nap import insert_norms


def test_srank_counts_the_directions_that_carry_the_spectrum():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(64, 64)).Q
    features = basis[:, :5] * torch.tensor([10.0, 9.0, 8.0, 7.0, 6.0])  # exactly rank 5
    assert srank(features @ torch.randn(5, 32)) == 5
    assert srank(torch.randn(256, 16)) == 16  # full rank noise
    assert srank(torch.ones(32, 8)) == 1


def test_dormant_units_are_those_below_tau_of_the_layer_mean():
    act = torch.ones(10, 4)
    act[:, 0] = 0.0  # dead unit
    act[:, 1] = 0.05  # score 0.05 / mean(0, 0.05, 1, 1) ≈ 0.07 -> dormant at tau 0.1
    assert unit_scores(act)[0] == 0
    assert dormant_fraction([act], tau=0.1) == 0.5
    conv = torch.ones(2, 3, 5, 5)
    conv[:, 2] = 0
    assert dormant_fraction([act, conv]) == 3 / 7


def test_report_on_a_network_with_a_dead_layer():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        net[0].bias.fill_(-100.0)  # every unit dead
    report = plasticity_report(net, net, torch.randn(16, 4))
    assert report["plasticity/dormant_fraction"] == 1.0
    assert report["plasticity/param_norm"] == parameter_norm(net) > 0


IMPALA_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def impala_units(width: int = 1, dense: int = 512) -> int:
    """ReLU units of the Impala encoder, from its definition (Espeholt et al. 2018, Dopamine's
    ImpalaEncoder): 3 stacks of C = 16, 32, 32 (x width) channels; per stack, each of the 2
    residual blocks has one hidden ReLU layer of C channels, and the stack's residual stream is C
    channels however many ReLUs read it (before each block, and at the encoder's end for the last
    stack): 3 C per stack. Then the dense ReLU layer."""
    return sum(3 * c * width for c in (16, 32, 32)) + dense


def constant_impala(dead_stream_channel: int | None = None) -> nn.Module:
    """An Impala encoder with every conv weight 0 and bias 1: each ReLU reads a positive constant
    (no unit dormant), except the dense layer (bias -1: all 512 units dead) and, optionally, one
    channel of the last stack's residual stream (zero wherever the stream is read)."""
    enc = make_encoder(EncoderConfig(kind="impala"), IMPALA_SPACE)
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.zero_()
                m.bias.fill_(1.0)
        enc.dense.bias.fill_(-1.0)
        if dead_stream_channel is not None:
            last = enc.convs[2]  # conv, pool, block, block: the convs writing into the stream
            for conv in (last[0], last[2].body[3], last[3].body[3]):
                conv.bias[dead_stream_channel] = 0.0
    return enc


def test_each_impala_layer_counts_its_units_once():
    enc = make_encoder(EncoderConfig(kind="impala", width=2), IMPALA_SPACE)
    layers, _ = relu_layers(enc, enc, torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    assert sum(unit_scores(a).numel() for a in layers) == impala_units(width=2)
    # NaP wraps each ReLU in Sequential(norm, ReLU): the same layers
    insert_norms(enc, torch.zeros(2, 4, 84, 84, dtype=torch.uint8), "layer")
    layers, _ = relu_layers(enc, enc, torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    assert sum(unit_scores(a).numel() for a in layers) == impala_units(width=2)


def test_impala_dormant_fraction_counts_a_residual_stream_once():
    obs = torch.as_tensor(np.stack([IMPALA_SPACE.sample() for _ in range(4)]))
    # only the dense layer's 512 units are dead
    enc = constant_impala()
    assert plasticity_report(enc, enc, obs)["plasticity/dormant_fraction"] == pytest.approx(512 / impala_units())
    # one more: a channel of the last stack's stream, read by three ReLUs, is one unit
    enc = constant_impala(dead_stream_channel=5)
    assert plasticity_report(enc, enc, obs)["plasticity/dormant_fraction"] == pytest.approx(513 / impala_units())


def test_the_same_tensor_through_two_relus_is_one_layer_and_a_reused_relu_is_not():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.shared = nn.Linear(4, 8), nn.Linear(8, 6), nn.ReLU()
            self.again = nn.ReLU()

        def forward(self, x):
            h = self.a(x)
            h = self.shared(h) + self.again(h)  # two ReLUs, one tensor: 8 units
            return self.shared(self.b(h))  # the same module on another layer: 6 more

    net = Net()
    layers, _ = relu_layers(net, net, torch.randn(5, 4))
    assert [a.shape[1] for a in layers] == [8, 6]
