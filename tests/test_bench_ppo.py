"""`rlsuite bench ppo`: both sides get the same PPO settings, network, env and run length, and a
--quick measurement through the CLI returns records for both. Needs stable-baselines3 (the `bench` extra)."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

sb3 = pytest.importorskip("stable_baselines3")

from rlsuite.agents import agent_classes  # noqa: E402
from rlsuite.agents.ppo.objective import value_loss  # noqa: E402
from rlsuite.bench import ppo_peers  # noqa: E402
from rlsuite.bench.ppo import TASKS, rlsuite_config, settings  # noqa: E402
from rlsuite.envs import make as make_env  # noqa: E402
from tests.bench_records import assert_names_its_measurement  # noqa: E402
from rlsuite.nn.schedules import lr_factor  # noqa: E402

NEEDS = {"minatar-breakout": ["minatar"], "pong": ["ale_py", "envpool"]}


def _task(task: str) -> str:
    for module in NEEDS.get(task, []):
        pytest.importorskip(module)
    return task


@pytest.mark.parametrize("task", list(TASKS))
def test_algorithm_settings_agree(task):
    """Field by field: rlsuite's agent config and SB3's PPO arguments from the same settings."""
    s = settings(_task(task), 5_000)
    cfg, kw = rlsuite_config(s), ppo_peers.sb3_kwargs(s)
    a, t = cfg.agent, TASKS[task]
    assert s["steps"] % (t.num_envs * 128) == 0 and s["steps"] >= 5_000  # whole rollouts
    assert a.num_steps == kw["n_steps"] == 128
    assert cfg.train.num_envs == s["num_envs"] == t.num_envs
    assert a.update_epochs == kw["n_epochs"] == 4
    assert kw["batch_size"] * a.num_minibatches == a.num_steps * cfg.train.num_envs  # 4 minibatches per epoch
    assert a.gamma == kw["gamma"] and a.gae_lambda == kw["gae_lambda"]
    assert a.clip_coef == kw["clip_range"] == t.clip_coef
    assert not a.clip_vloss and kw["clip_range_vf"] is None
    assert a.norm_adv and kw["normalize_advantage"]
    assert a.ent_coef == kw["ent_coef"] == 0.01
    assert a.vf_coef == 2 * kw["vf_coef"] == 0.5  # SB3's MSE vs rlsuite's 0.5 MSE (test_value_losses_agree)
    assert a.max_grad_norm == kw["max_grad_norm"] == 0.5
    assert a.target_kl == 0 and kw["target_kl"] is None
    assert a.adam_eps == kw["policy_kwargs"]["optimizer_kwargs"]["eps"] == 1e-5
    assert a.shared_trunk == t.shared_trunk and a.core == "none" and not a.rnd.enabled and not a.eval_sample
    assert a.gmp.sparsity == 0 and a.nap.norm == "none" and not a.nap.project
    assert a.encoder.kind == s["network"] and a.encoder.init == "orthogonal" and kw["policy_kwargs"]["ortho_init"]
    if s["network"] == "mlp":
        assert a.encoder.activation == "tanh" and kw["policy_kwargs"]["activation_fn"] is torch.nn.Tanh
        assert list(a.encoder.hidden) == kw["policy_kwargs"]["net_arch"]["pi"] == kw["policy_kwargs"]["net_arch"]["vf"]
    assert cfg.train.total_steps == s["steps"] and not cfg.train.progress and cfg.train.eval_every == 0
    assert cfg.train.device == kw["device"] == "cpu" and cfg.train.torch_threads == s["threads"]
    assert cfg.train.seed == kw["seed"] and cfg.env.backend == t.backend
    # lr annealing: rlsuite's update k (before which k rollouts are done) against SB3's schedule at
    # the progress SB3 has when it trains on rollout k (its steps already counted)
    assert a.anneal_lr and a.lr == kw["learning_rate"].lr
    rollouts = s["steps"] // (a.num_steps * cfg.train.num_envs)
    for k in range(rollouts):
        ours = a.lr * lr_factor(k / rollouts, "linear", 0.0)
        theirs = kw["learning_rate"](1.0 - (k + 1) * a.num_steps * cfg.train.num_envs / s["steps"])
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15), k


def test_value_losses_agree():
    """rlsuite vf_coef * value_loss (0.5 MSE, unclipped) == SB3 (vf_coef / 2) * F.mse_loss."""
    assert "F.mse_loss(rollout_data.returns, values_pred)" in inspect.getsource(sb3.PPO.train)
    g = torch.Generator().manual_seed(0)
    new, old, ret = (torch.randn(64, generator=g) for _ in range(3))
    s = settings("cartpole", 1_000)
    ours = s["vf_coef"] * value_loss(new, old, ret, s["clip_coef"], s["clip_vloss"])
    theirs = ppo_peers.sb3_kwargs(s)["vf_coef"] * torch.nn.functional.mse_loss(ret, new)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("task", list(TASKS))
def test_networks_and_inputs_agree(task):
    """Same layers in the same order; with rlsuite's weights copied in, SB3's policy (after its own
    observation preprocessing) gives the same log-probabilities and values on a real observation."""
    s = settings(_task(task), 1_000)
    cfg = rlsuite_config(s)
    model = ppo_peers.build_sb3(s)
    env = make_env(cfg.env, s["num_envs"], 0)
    try:
        agent_cls, _ = agent_classes(cfg.algo)
        agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, "cpu", seed=0)
        ours, theirs = list(agent.online.parameters()), list(model.policy.parameters())
        assert [tuple(p.shape) for p in ours] == [tuple(p.shape) for p in theirs]
        assert model.observation_space.shape == env.single_observation_space.shape
        assert model.action_space.n == env.single_action_space.n and model.n_envs == s["num_envs"]
        obs, _ = env.reset(seed=0)
        for _ in range(5):
            obs, *_ = env.step(np.ones(s["num_envs"], dtype=np.int64) % env.single_action_space.n)
        with torch.no_grad():
            for mine, peer in zip(ours, theirs):
                peer.copy_(mine)
            logits, value, _, _ = agent.online(torch.as_tensor(obs))
            x = model.policy.obs_to_tensor(obs)[0]
            dist = model.policy.get_distribution(x).distribution
            peer_value = model.policy.predict_values(x).squeeze(1)
        torch.testing.assert_close(dist.logits, torch.log_softmax(logits, 1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(peer_value, value, rtol=1e-5, atol=1e-5)
    finally:
        env.close()
        model.get_env().close()


def test_quick_measurement_through_the_cli():
    """`--fast none`: rlsuite's fp32 mode and SB3 only, each record naming what it measured."""
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", "ppo", "--quick", "--tasks", "cartpole", "--fast", "none"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted((r["impl"], r["mode"]) for r in rows) == [("rlsuite", "fp32"), ("sb3", "fp32")]
    for r in rows:
        assert "error" not in r, r
        assert_names_its_measurement(r, r["impl"], "fp32")
        assert r["fast_overrides"] == [] and "ratio_vs_fp32" not in r
        assert r["bench"] == "ppo" and r["task"] == "cartpole" and r["repeats"] == 1 and r["steps_run"] == [2048]
        assert 0 < r["steps_per_s"]["min"] <= r["steps_per_s"]["median"] <= r["steps_per_s"]["max"]
        assert r["settings"]["steps"] == 2048 and r["settings"]["num_envs"] == 4
    by_impl = {r["impl"]: r for r in rows}
    assert by_impl["sb3"]["total_timesteps"] == [2048]
    # 4 rollouts x 4 epochs x 4 minibatches on both sides
    assert by_impl["rlsuite"]["updates"] == by_impl["sb3"]["updates"] == [64]
    assert "ratio_vs_sb3" in by_impl["rlsuite"]
    assert "rlsuite-fp32" in proc.stderr and "rlsuite-fast" not in proc.stderr  # the readable table


def test_bad_fast_value_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "rlsuite.cli", "bench", "ppo", "--tasks", "cartpole",
                           "--fast", "train.precision=fp16"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "bad --fast" in proc.stderr and "train.precision" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""


def test_unknown_task_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "rlsuite.cli", "bench", "ppo", "--tasks", "cartpol"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown bench ppo task" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
