"""`rlsuite bench networks`: one record per network with the fp32 time and each mode's speed-up."""
from __future__ import annotations

import json

import torch

from rlsuite.bench.networks import build_probe, format_table, measure
from rlsuite.cli import main


def test_probe_is_the_networks_training_batch():
    module, args, batch = build_probe("ppo-atari", "pong", torch.device("cpu"))
    assert batch == "256" and args[0].shape == (256, 4, 84, 84)  # 8 envs x 128 steps / 4 minibatches
    module, args, batch = build_probe("dt", "minatar:breakout", torch.device("cpu"))
    assert args[0].shape[:2] == (64, 20) and batch == "64x20"  # the preset's batch of K=20 windows


def test_a_record_names_every_mode_and_the_table_reads(capsys):
    record = measure("MLP", "dqn-classic", "CartPole-v1", torch.device("cpu"), rounds=1)
    assert record["fp32_ms"] > 0 and record["auto_pick"] in ("fp32", "bf16")
    assert "channels_last" not in record["speedup"] and "compiled" in record["speedup"]  # an MLP has no convs
    assert all(v > 0 for v in record["speedup"].values())
    table = format_table([record])
    assert "MLP" in table and "auto picks" in table


def test_cli_refuses_options_of_other_benches(capsys):
    assert main(["bench", "networks", "--fast", "none"]) == 2
    assert "--fast applies to" in capsys.readouterr().err
    assert main(["bench", "networks", "--size", "small"]) == 2
