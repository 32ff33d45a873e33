"""Behaviour cloning (rlsuite train bc): the plain baseline beside every Decision Transformer table.

Data: the committed PPO CartPole-v1 teacher (tests/data/ppo-cartpole-60k.pt, greedy mean 434)
plays 8 greedy episodes. BC must imitate it: uniformly random play averages about 22 and an
untrained or input-blind network about that, so >= 200 after 600 updates is out of reach of a
broken loss, target or optimizer step.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlsuite.cli import main
from rlsuite.data import collect
from rlsuite.trained.policy import load_policy

TEACHER = Path(__file__).parent / "data" / "ppo-cartpole-60k.pt"


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bc-data")
    policy = load_policy(TEACHER, num_envs=4)
    manifest = {"env_id": "CartPole-v1", "env": dataclasses.asdict(policy.cfg.env)}
    try:
        data = collect(policy.agent, policy.env, root / "expert", episodes=8, rng=np.random.default_rng(0),
                       seed=1, manifest=manifest)
    finally:
        policy.env.close()
    assert data.stats()["return_mean"] > 300
    return root / "expert"


def test_bc_imitates_the_expert_data_from_the_cli(tmp_path, capsys, expert_data):
    run = tmp_path / "run"
    sets = ["train.eval_every=300", "train.eval_episodes=10", "train.eval_num_envs=5", "train.torch_threads=2",
            "agent.lr=1e-3"]
    assert main(["train", "bc", "--dataset", str(expert_data), "--steps", "600", "--run-dir", str(run),
                 "--no-progress", *[x for s in sets for x in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "bc: final evaluation after 600 updates" in out and "target" not in out.split("final evaluation")[1]
    final = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert final["mean"] >= 200, final
    assert main(["eval", str(run), "--episodes", "5", "--num-envs", "5"]) == 0  # rlsuite eval plays it too


def test_bc_loss_is_the_cross_entropy_of_the_data_actions(expert_data):
    """The loss against -mean log softmax(logits)[a] computed by hand over the real steps."""
    from gymnasium import spaces

    from rlsuite.agents.bc import BC, BCConfig
    from rlsuite.data.dataset import Dataset
    from rlsuite.data.sequences import SequenceSampler

    sampler = SequenceSampler([Dataset(expert_data)])
    agent = BC(BCConfig(), spaces.Box(-np.inf, np.inf, (4,), np.float32), spaces.Discrete(2), seed=3)
    batch = sampler.sample_sequences(16, 1, np.random.default_rng(0))
    with torch.no_grad():
        logits = agent.model(batch.obs[batch.mask]).double().numpy()
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -log_probs[np.arange(len(logits)), batch.actions[batch.mask].numpy()].mean()
    got = float(agent.losses(batch)["action_ce"].detach())
    assert abs(got - want) < 1e-5


def test_bc_refuses_a_target_return_in_one_line(tmp_path, capsys, expert_data):
    run = tmp_path / "run"
    for bad in ("agent.lr=0", "agent.batch_size=0", "agent.eval_epsilon=2", "agent.max_grad_norm=-1"):
        assert main(["train", "bc", "--dataset", str(expert_data), "--run-dir", str(run), "--set", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and bad.split("=")[0] in err and not run.exists()
    assert main(["train", "bc", "--dataset", str(expert_data), "--steps", "20", "--run-dir", str(run),
                 "--no-progress", "--set", "train.eval_episodes=1", "--set", "train.eval_num_envs=1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--target", "500"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--target" in err and "bc" in err
    assert main(["finetune", "--from", str(run), "--dataset", str(expert_data), "--lora", "memory",
                 "--run-dir", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--lora" in err and not (tmp_path / "ft").exists()


def test_offline_eval_takes_evaluation_keys_only(tmp_path, capsys, expert_data):
    run = tmp_path / "run"
    assert main(["train", "bc", "--dataset", str(expert_data), "--steps", "20", "--run-dir", str(run),
                 "--no-progress", "--set", "train.eval_episodes=1", "--set", "train.eval_num_envs=1"]) == 0
    assert main(["eval", str(run), "--episodes", "2", "--num-envs", "2", "--set", "agent.eval_epsilon=1"]) == 0
    record = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert record["overrides"] == ["agent.eval_epsilon=1"] and record["mean"] < 100  # random play on CartPole
    capsys.readouterr()
    assert main(["eval", str(run), "--set", "agent.lr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "agent.eval_epsilon" in err
