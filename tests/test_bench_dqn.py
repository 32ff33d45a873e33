"""`rlsuite bench dqn`: both sides get the same algorithm, network, env and run length, and a tiny
real measurement through the CLI returns records for both. Needs stable-baselines3 (the `bench` extra)."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

sb3 = pytest.importorskip("stable_baselines3")

from stable_baselines3.common.utils import LinearSchedule  # noqa: E402

from rlsuite.agents import agent_classes  # noqa: E402
from rlsuite.agents.dqn.exploration import linear_epsilon  # noqa: E402
from rlsuite.bench import dqn_peers, modes  # noqa: E402
from rlsuite.bench.dqn import TASKS, rlsuite_config, settings  # noqa: E402
from rlsuite.envs import make as make_env  # noqa: E402
from rlsuite.errors import UserError  # noqa: E402
from tests.bench_records import assert_names_its_measurement  # noqa: E402

NEEDS = {"minatar-breakout": "minatar", "pong": "ale_py"}


def _task(task: str) -> str:
    if task in NEEDS:
        pytest.importorskip(NEEDS[task])
    return task


@pytest.mark.parametrize("task", list(TASKS))
def test_algorithm_settings_agree(task):
    s = settings(_task(task), 5_000)
    cfg, kw = rlsuite_config(s), dqn_peers.sb3_kwargs(s)
    a = cfg.agent
    assert "smooth_l1_loss" in inspect.getsource(sb3.DQN.train) and a.loss == "huber"
    assert not a.double and not a.dueling and a.n_step == 1 and not cfg.replay.prioritized  # SB3: vanilla 1-step
    assert a.gmp.sparsity == 0 and a.nap.norm == "none" and not a.nap.project
    assert a.max_grad_norm == kw["max_grad_norm"] == 10
    assert a.lr == kw["learning_rate"] and a.lr_schedule == "constant"
    assert a.adam_eps == kw["policy_kwargs"]["optimizer_kwargs"]["eps"]
    assert a.gamma == kw["gamma"] and a.batch_size == kw["batch_size"]
    assert a.learning_starts == kw["learning_starts"] and a.train_freq == kw["train_freq"]
    assert a.gradient_steps == kw["gradient_steps"] == 1
    assert a.target_update_period == kw["target_update_interval"] and kw["tau"] == 1.0
    assert cfg.replay.capacity == kw["buffer_size"]
    assert cfg.train.total_steps == s["steps"] and cfg.train.num_envs == 1 and not cfg.train.progress
    assert cfg.train.device == kw["device"] == "cpu" and cfg.train.torch_threads == s["threads"]
    assert cfg.train.eval_every == 0 and cfg.env.backend == TASKS[task].backend
    if a.encoder.kind == "nature":
        assert a.encoder.padding == "valid"  # SB3's NatureCNN: 3136 features
    # SB3 anneals over a fraction of total_timesteps (= the steps run); rlsuite over env steps from 0
    sched = LinearSchedule(kw["exploration_initial_eps"], kw["exploration_final_eps"], kw["exploration_fraction"])
    for step in range(0, s["steps"] + 1, 37):
        ours = linear_epsilon(step, a.epsilon_start, a.epsilon_end, a.epsilon_decay_steps, a.epsilon_decay_start)
        assert ours == pytest.approx(sched(1 - step / s["steps"]), abs=1e-9), step
    assert 0 < a.epsilon_decay_steps < s["steps"] and a.epsilon_decay_start == 0


@pytest.mark.parametrize("task", list(TASKS))
def test_networks_and_inputs_agree(task):
    """Same layers in the same order; with rlsuite's weights copied in, SB3's network (after its own
    observation preprocessing) gives the same Q-values on a real observation."""
    s = settings(_task(task), 1_000)
    cfg = rlsuite_config(s)
    model = dqn_peers.build_sb3(s)
    env = make_env(cfg.env, 1, 0)
    try:
        agent_cls, _ = agent_classes(cfg.algo)
        agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, "cpu", seed=0)
        ours, theirs = list(agent.online.parameters()), list(model.q_net.parameters())
        assert [tuple(p.shape) for p in ours] == [tuple(p.shape) for p in theirs]
        assert model.observation_space.shape == env.single_observation_space.shape
        assert model.action_space.n == env.single_action_space.n
        for step in range(0, s["steps"] + 1, 50):  # the agent's own epsilon against SB3's own schedule object
            assert agent.epsilon(step) == pytest.approx(model.exploration_schedule(1 - step / s["steps"]), abs=1e-9)
        obs, _ = env.reset(seed=0)
        for _ in range(5):
            obs, *_ = env.step(np.ones(1, dtype=np.int64) % env.single_action_space.n)
        with torch.no_grad():
            for mine, peer in zip(ours, theirs):
                peer.copy_(mine)
            q_ours = agent.online(torch.as_tensor(obs))
            q_theirs = model.q_net(model.policy.obs_to_tensor(obs)[0])
        torch.testing.assert_close(q_theirs, q_ours, rtol=1e-5, atol=1e-5)
    finally:
        env.close()
        model.get_env().close()


def test_sb3_run_length_is_the_measured_steps():
    result = dqn_peers.sb3_worker("cartpole", 300)
    assert result["total_timesteps"] == result["steps"] == 300
    s = settings("cartpole", 300)
    assert result["updates"] == (300 - s["learning_starts"]) // s["train_freq"]


def test_tiny_measurement_through_the_cli():
    """The default fast mode (train.precision=auto, memory_format=auto) is measured beside fp32 and SB3."""
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", "dqn", "--tasks", "cartpole", "--steps", "600",
           "--repeats", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted((r["impl"], r["mode"], r["allocator"]) for r in rows) == sorted(
        (i, m, a) for i, m in (("rlsuite", "fp32"), ("sb3", "fp32"), ("rlsuite", "fast"))
        for a in ("glibc-default", "tuned"))
    for r in rows:
        assert_names_its_measurement(r, r["impl"], r["mode"])
        if r["mode"] == "fast":
            assert r["fast_overrides"] == list(modes.DEFAULT_FAST)
            assert r["requested"] == {**modes.SPEED_FIELDS, "precision": "auto", "memory_format": "auto"}
            assert "ratio_vs_fp32" in r
    assert "rlsuite-fast" in proc.stderr and "ratio vs sb3" in proc.stderr  # the readable table
    for r in rows:
        assert "error" not in r, r
        assert r["task"] == "cartpole" and r["repeats"] == 1 and r["steps_run"] == [600]
        assert 0 < r["steps_per_s"]["min"] <= r["steps_per_s"]["median"] <= r["steps_per_s"]["max"]
        assert r["settings"]["steps"] == 600 and r["settings"]["loss"] == "huber"
    sb3_rows = [r for r in rows if r["impl"] == "sb3"]
    assert all(r["total_timesteps"] == [600] for r in sb3_rows)
    updates = {r["impl"]: r["updates"] for r in rows if r["allocator"] == "tuned" and r["mode"] == "fp32"}
    assert updates["rlsuite"] == updates["sb3"] and updates["sb3"][0] > 0
    assert all("ratio_vs_sb3" in r for r in rows if r["impl"] == "rlsuite")


def test_unknown_task_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "rlsuite.cli", "bench", "dqn", "--tasks", "cartpol"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown bench dqn task" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_fast_option_is_parsed_and_checked():
    assert modes.parse_fast(None) == modes.DEFAULT_FAST
    assert modes.parse_fast(None, "cuda") == modes.DEFAULT_FAST + modes.CUDA_FAST
    assert modes.parse_fast("none") == () and modes.order("sb3", ()) == [("rlsuite", "fp32"), ("sb3", "fp32")]
    assert modes.parse_fast("train.precision=bf16, agent.encoder.hidden=64,64") == (
        "train.precision=bf16", "agent.encoder.hidden=64,64")
    build = lambda fast: rlsuite_config(settings("cartpole", 1_000), fast)  # noqa: E731
    cfg = build(modes.parse_fast("train.precision=bf16,train.compile=true"))
    assert modes.speed_fields(cfg.train) == {**modes.SPEED_FIELDS, "precision": "bf16", "compile": True}
    for bad in ("train.precision", "=1", ""):
        with pytest.raises(UserError, match="bad --fast"):
            modes.parse_fast(bad)
    with pytest.raises(UserError, match="needs --device cuda"):
        modes.validate(("train.cudagraphs=true",), build)


@pytest.mark.parametrize("fast, says", [("train.precison=bf16", "unknown config key 'train.precison'"),
                                        ("train.compile", "expected key=value")])
def test_bad_fast_is_a_one_line_error(fast, says):
    proc = subprocess.run([sys.executable, "-m", "rlsuite.cli", "bench", "dqn", "--tasks", "cartpole", "--fast", fast],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and says in proc.stderr and "bad --fast" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
