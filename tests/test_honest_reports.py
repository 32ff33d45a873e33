"""A run that cannot do what was asked says so at the start; reports tell the truth; absurd sizes
are refused before anything is built; `rlsuite eval` evaluates task-sequence runs.

Through the CLI where the user meets it (exit code, one line, nothing written), with expected
values derived from the definitions (GMP's Eq. 1, Dopamine's epsilon schedule) or the raw env.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlsuite import config

from rlsuite.loops import online as train_module
from rlsuite.loops.train import train

from rlsuite.run import preflight
from rlsuite.agents.dqn import DQN as DQNAgent
from rlsuite.cli import main
from rlsuite.envs import make as make_env

TINY = ["--set", "train.torch_threads=1", "--set", "train.eval_episodes=2", "--no-progress"]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line.strip()]


def agent_for(preset: str, env: str, overrides: list[str]) -> tuple[DQNAgent, config.RunConfig]:
    cfg = config.build_run_config(preset, env, overrides)
    probe = make_env(cfg.env, 1, 0)
    agent = DQNAgent(cfg.agent, probe.single_observation_space, probe.single_action_space, "cpu", seed=0)
    probe.close()
    agent.plan(cfg.train.total_steps)
    return agent, cfg


# ----------------------------------------------------------------------------- warnings at the start


def test_a_run_below_learning_starts_warns_before_training(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", "dqn-minatar", "--env", "minatar:breakout", "--steps", "300", "--run-dir", str(run_dir),
                 "--set", "agent.learning_starts=5000", *TINY]) == 0
    out = capsys.readouterr().out.splitlines()
    warnings = [line for line in out if line.startswith("warning:")]
    assert any("no gradient update will run" in w and "learning_starts=5,000" in w for w in warnings), out
    # said at the start: before the final table
    assert out.index(warnings[0]) < next(i for i, line in enumerate(out) if "final evaluation" in line)


def test_gmp_that_cannot_finish_its_schedule_says_where_it_stops():
    # 3,000 steps, train_freq 4, learning_starts 0 -> 750 updates; window [150, 600]; masks every 200.
    agent, _ = agent_for("dqn-minatar", "minatar:breakout", [
        "train.total_steps=3000", "agent.learning_starts=0", "agent.train_freq=4", "agent.gmp.sparsity=0.9",
        "agent.gmp.update_freq=200", "agent.epsilon_decay_steps=1000", "agent.epsilon_decay_start=0"])
    # the last mask update in the window is update 600 = the window's end: s_F * (1 - (1 - p)^3) with
    # the library's +1 offset: p = (600 + 1 - 150) / 450 > 1 -> full sparsity; no warning about it
    assert not [w for w in agent.plan_warnings(3000) if "sparsity" in w or "mask" in w]
    agent, _ = agent_for("dqn-minatar", "minatar:breakout", [
        "train.total_steps=3000", "agent.learning_starts=0", "agent.train_freq=4", "agent.gmp.sparsity=0.9",
        "agent.gmp.update_freq=250", "agent.epsilon_decay_steps=1000", "agent.epsilon_decay_start=0"])
    # masks at 250 and 500; the window ends at 600: stops at 0.9 (1 - (1 - (500 + 1 - 150) / 450)^3)
    expected = 0.9 * (1 - (1 - (500 + 1 - 150) / 450) ** 3)
    warning = [w for w in agent.plan_warnings(3000) if "pruning will stop" in w]
    assert warning and f"{expected:.3f}" in warning[0], agent.plan_warnings(3000)


def test_gmp_without_any_mask_update_and_an_unfinished_epsilon_warn():
    agent, _ = agent_for("dqn-minatar", "minatar:breakout", [
        "train.total_steps=3000", "agent.learning_starts=0", "agent.gmp.sparsity=0.9", "agent.gmp.update_freq=1000"])
    warnings = agent.plan_warnings(3000)
    assert any("no mask update will run" in w for w in warnings), warnings
    # epsilon: linear from 1.0 (start) to 0.1 over decay_steps after decay_start, read off the config
    c = agent.cfg
    expected = c.epsilon_start + (c.epsilon_end - c.epsilon_start) * (3000 - c.epsilon_decay_start) / c.epsilon_decay_steps
    assert any(f"epsilon will still be {max(expected, c.epsilon_end):.3f}" in w for w in warnings), warnings


def test_a_task_sequence_with_replay_resets_warns_per_task():
    agent, cfg = agent_for("dqn-minatar", "minatar:breakout", ["train.tasks=minatar:breakout,minatar:asterix",
                                                               "train.steps_per_task=3000"])
    assert any("each task's 3,000 steps" in w for w in agent.plan_warnings(6000, fresh_replay_every=3000))
    assert not [w for w in agent.plan_warnings(60_000, fresh_replay_every=30_000) if "gradient" in w]


def test_compare_flags_arms_that_never_reached_their_sparsity(tmp_path, capsys):
    run_dir = tmp_path / "sweep" / "gmp" / "s1"
    assert main(["train", "dqn-minatar", "--env", "minatar:breakout", "--steps", "400", "--run-dir", str(run_dir),
                 "--set", "agent.gmp.sparsity=0.9", "--set", "agent.learning_starts=0", *TINY]) == 0
    assert records(run_dir)[-1]["sparsity"] == 0.0  # recorded with the evaluation
    capsys.readouterr()
    assert main(["compare", str(run_dir), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "did not reach their configured sparsity 0.9 (reached: 0.000)" in out
    assert "did not reach" in (tmp_path / "cmp" / "compare.md").read_text()


# ----------------------------------------------------------------------------- eval of task-sequence runs


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("seq") / "run"
    assert main(["train", "dqn-minatar", "--tasks", "minatar:breakout,minatar:space_invaders", "--steps-per-task", "300",
                 "--run-dir", str(run_dir), "--set", "agent.learning_starts=100", *TINY]) == 0
    return run_dir


def test_eval_of_a_sequence_run_uses_its_own_env_interface(sequence_run, capsys):
    assert main(["eval", str(sequence_run), "--episodes", "2", "--num-envs", "2"]) == 0
    last = records(sequence_run)[-1]
    assert last["env"] == "minatar:space_invaders"  # the task it was training at its last checkpoint
    assert main(["eval", str(sequence_run), "--episodes", "2", "--env", "minatar:breakout"]) == 0
    assert records(sequence_run)[-1]["env"] == "minatar:breakout"
    # breakout alone: 4 channels, 3 actions; the sequence's network: space invaders' 6 channels, all 6 actions
    import minatar

    from rlsuite.trained.policy import load_policy

    breakout, invaders = minatar.Environment("breakout"), minatar.Environment("space_invaders")
    assert len(breakout.minimal_action_set()) == 3 and breakout.state_shape()[2] == 4
    policy = load_policy(sequence_run, env_id="minatar:breakout", num_envs=1)
    assert policy.env.single_observation_space.shape[0] == invaders.state_shape()[2] == 6
    assert policy.env.single_action_space.n == invaders.num_actions() == 6
    policy.env.close()


def test_eval_on_an_env_the_network_cannot_take_names_the_trained_tasks(sequence_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(sequence_run), "--episodes", "1", "--env", "pong"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on minatar:breakout, minatar:space_invaders" in err[0], err


# ----------------------------------------------------------------------------- honest reports


def test_eval_records_every_game_and_how_it_was_played(sequence_run):
    assert main(["eval", str(sequence_run), "--episodes", "3", "--num-envs", "2", "--seed", "7",
                 "--epsilon", "0.05"]) == 0
    r = records(sequence_run)[-1]
    assert r["source"] == "rlsuite eval" and r["step"] == 600 and r["checkpoint"].endswith(".pt")
    assert r["epsilon"] == 0.05 and r["seed"] == 7 and r["num_envs"] == 2 and r["env"] == "minatar:space_invaders"
    assert len(r["episode_returns"]) == len(r["episode_lengths"]) == 3
    assert r["mean"] == pytest.approx(np.mean(r["episode_returns"]))


def test_training_evaluations_record_every_game(sequence_run):
    for r in records(sequence_run):
        if r.get("source") != "rlsuite eval":
            assert len(r["episode_returns"]) == r["episodes"] == 2
            assert r["mean"] == pytest.approx(np.mean(r["episode_returns"]))


def test_steps_per_second_leaves_evaluation_time_out(tmp_path, monkeypatch):
    real = train_module.evaluate

    def slow_evaluate(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", slow_evaluate)
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", [
        "train.total_steps=400", "agent.learning_starts=100", "train.eval_every=200", "train.eval_episodes=1",
        "train.progress=false", "train.torch_threads=1"])
    result = train(cfg, tmp_path / "r")
    assert result["eval_seconds"] >= 3.0  # two evaluations (step 200 and the end), each slept 1.5 s
    assert result["steps_per_second"] == pytest.approx(400 / result["train_seconds"])


def test_no_progress_prints_a_periodic_status_line(tmp_path, capsys):
    assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "4000", "--run-dir", str(tmp_path / "r"),
                 "--set", "train.status_every=0.2", "--set", "agent.learning_starts=500", *TINY]) == 0
    err = capsys.readouterr().err
    lines = re.findall(r"step [\d,]+/4,000 \(\d+%\)  [\d,]+ steps/s  return \S+  eps [\d.]+  ETA \S+", err)
    assert lines, err


def test_a_slow_start_is_announced():
    nethack = config.build_run_config("dqn",
                                      "NetHackScore-v0", ["train.num_envs=8"])
    assert "starting 12 nethack envs" in preflight.waiting_line(nethack)
    assert preflight.waiting_line(config.build_run_config("dqn-classic", "CartPole-v1", [])) is None


# ----------------------------------------------------------------------------- absurd sizes


@pytest.mark.parametrize("argv, message", [
    (["dqn-classic", "--env", "CartPole-v1", "--num-envs", "100000"], "replay capacity 50,000 is too small for 100,000 envs"),
    (["dqn", "--env", "pong", "--num-envs", "100000"], "of memory"),
])
def test_absurd_sizes_are_refused_before_any_env_is_built(tmp_path, capsys, argv, message):
    run_dir = tmp_path / "r"
    assert main(["train", *argv, "--steps", "1000", "--run-dir", str(run_dir), "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0], err
    assert not run_dir.exists() or not any(p.name != ".lock" for p in run_dir.iterdir())


def test_memory_check_counts_replay_and_envs(monkeypatch):
    cfg = config.build_run_config("dqn-minatar", "minatar:breakout", ["train.num_envs=4"])
    monkeypatch.setattr(preflight, "available_memory", lambda: 10_000_000)
    with pytest.raises(Exception, match="needs about .* but 10 MB is available"):
        preflight.check(cfg)
    monkeypatch.setattr(preflight, "available_memory", lambda: 10**12)
    preflight.check(cfg)


def test_async_workers_respect_the_process_and_file_limits(monkeypatch):
    import resource

    cfg = config.build_run_config("dqn-minatar", "minatar:breakout", ["env.backend=gymnasium-async", "train.num_envs=64"])
    real = resource.getrlimit
    monkeypatch.setattr(preflight.resource, "getrlimit",
                        lambda what: (50, 50) if what == resource.RLIMIT_NPROC else real(what))
    with pytest.raises(Exception, match="exceed this user's process limit"):
        preflight.check_processes(cfg)
    monkeypatch.setattr(preflight.resource, "getrlimit",
                        lambda what: (100, 100) if what == resource.RLIMIT_NOFILE else (10**6, 10**6))
    with pytest.raises(Exception, match="open files"):
        preflight.check_processes(cfg)


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("env_id, family", [("ALE/Pong-v5", "atari"), ("CartPole-v1", "classic")])
def test_the_per_env_memory_budget_covers_real_envs(env_id, family):
    """Raw gymnasium envs (not rlsuite's): the budget must cover what one more real env costs."""
    import ale_py  # noqa: F401  (registers ALE/)

    gym.register_envs(ale_py)
    first = gym.make(env_id)
    first.reset(seed=0)
    before = _rss()
    envs = [gym.make(env_id) for _ in range(16)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    per_env = (_rss() - before) / len(envs)
    assert per_env <= preflight.PER_ENV_BYTES[family], per_env
    for env in envs + [first]:
        env.close()
