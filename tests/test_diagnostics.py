"""Plasticity diagnostics against hand-made cases."""
from __future__ import annotations

import torch
from torch import nn

from rlsuite.nn.diagnostics import dormant_fraction, parameter_norm, plasticity_report, srank, unit_scores


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
