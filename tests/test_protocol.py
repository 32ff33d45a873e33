"""Protocol faults found against Dopamine, CleanRL and SB3: epsilon warm-up, independent seeds,
update schedules, network sizes and init, diagnostics batches, summary metrics. Every right value
here is derived from the reference's definition, written out in the test."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rlsuite import config

from rlsuite.run import seeding
from rlsuite.agents.dqn import DQN
from rlsuite.loops.online import advance, build_session, run_evaluation, train_env_seeds
from rlsuite.loops.train import train
from rlsuite.run.evaluate import eval_env_seeds
from tests.conftest import TINY

# ----------------------------------------------------------------------------- fault 4: epsilon


def dopamine_epsilon(step: int, decay_period: int = 250_000, warmup: int = 20_000, epsilon: float = 0.01) -> float:
    """dopamine/jax/agents/dqn/dqn_agent.py linearly_decaying_epsilon, written out."""
    steps_left = decay_period + warmup - step
    bonus = (1.0 - epsilon) * steps_left / decay_period
    return epsilon + float(np.clip(bonus, 0.0, 1.0 - epsilon))


def cleanrl_epsilon(step: int, start: float, end: float, duration: int) -> float:
    """cleanrl/dqn_atari.py linear_schedule, written out."""
    slope = (end - start) / duration
    return max(slope * step + start, end)


def agent_for(preset: str, env: str = "pong") -> DQN:
    cfg = config.build_run_config(preset, env)
    return DQN(cfg.agent, _atari_space(), _actions(6))


def _atari_space():
    import gymnasium as gym

    return gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def _actions(n: int):
    import gymnasium as gym

    return gym.spaces.Discrete(n)


@pytest.mark.parametrize("preset", ["dqn", "dqn-gmp", "dqn-gmp-resnet3"])
def test_dopamine_presets_hold_epsilon_through_the_warm_up(preset):
    cfg = config.build_run_config(preset, "pong")
    agent = DQN.__new__(DQN)  # epsilon needs only the config: no network for the ResNet x3
    agent.cfg = cfg.agent
    expected = {10_000: 1.0, 20_000: 1.0, 145_000: 0.505, 250_000: 0.0892}
    for step, value in expected.items():
        assert agent.epsilon(step) == pytest.approx(dopamine_epsilon(step), abs=1e-9)
        assert agent.epsilon(step) == pytest.approx(value, abs=1e-4)


def test_cleanrl_preset_decays_from_step_zero():
    cfg = config.build_run_config("dqn-cleanrl", "breakout")
    agent = DQN.__new__(DQN)
    agent.cfg = cfg.agent
    for step in (0, 10_000, 20_000, 145_000, 250_000, 2_000_000):
        assert agent.epsilon(step) == pytest.approx(cleanrl_epsilon(step, 1.0, 0.01, 1_000_000), abs=1e-9)


# ----------------------------------------------------------------------------- fault 5: seeds


def run_streams(seed: int, num_envs: int = 8, phases: int = 3, evaluations: int = 5) -> dict[str, set[int]]:
    """Every integer seed a run hands out, by stream (what build_session / evaluation use)."""
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", [f"train.seed={seed}", f"train.num_envs={num_envs}",
                                                                 f"train.eval_num_envs={num_envs}"])
    streams: dict[str, set[int]] = {"train_env": set(), "eval_env": set(), "single": set()}
    for phase in range(phases):
        streams["train_env"] |= set(train_env_seeds(cfg, phase))
        streams["single"].add(seeding.int_seed(seed, "replay", phase))
    for k in range(evaluations):
        streams["eval_env"] |= set(eval_env_seeds(cfg, 5_000 * (k + 1)))
    for name in ("exploration", "network", "global", "diagnostics"):
        streams["single"].add(seeding.int_seed(seed, name))
    return streams


def test_no_two_streams_of_runs_1_to_10_share_a_seed():
    seen: dict[int, tuple[int, str]] = {}
    for seed in range(1, 11):
        for name, values in run_streams(seed).items():
            for value in values:
                assert value not in seen, f"seed {value} of run {seed} ({name}) also used by run/stream {seen[value]}"
                seen[value] = (seed, name)
    assert len(seen) == 10 * (3 * 8 + 5 * 8 + 3 + 4)


def test_the_old_scheme_would_have_failed_this_check():
    """seed + i for env i: runs 1 and 2 share 7 of 8 env seeds (what the test above forbids)."""
    run1, run2 = {1 + i for i in range(8)}, {2 + i for i in range(8)}
    assert len(run1 & run2) == 7


def test_agent_exploration_is_not_an_env_stream():
    agent_draws = seeding.generator(1, "exploration").integers(1 << 30, size=16)
    for env_seed in seeding.env_seeds(1, "train_env", 0, n=4):
        assert not np.array_equal(agent_draws, np.random.default_rng(env_seed).integers(1 << 30, size=16))
        assert not np.array_equal(agent_draws, np.random.default_rng(1).integers(1 << 30, size=16))


def final_weights(run_dir: Path, extra: list[str]) -> tuple[list[float], dict[str, torch.Tensor]]:
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", TINY + ["train.total_steps=1500", *extra])
    session = build_session(cfg, run_dir)
    session.obs, _ = session.env.reset(seed=train_env_seeds(cfg, 0))

    losses = []
    while session.step < cfg.train.total_steps:
        result = advance(session)
        if result.metrics is not None:
            losses.append(float(result.metrics["losses/td"]))
        if session.step % cfg.train.eval_every == 0:
            run_evaluation(session, None)
        if session.step % cfg.train.diagnostics_every == 0:
            session.agent.diagnostics(session.step)
    return losses, {k: v.clone() for k, v in session.agent.online.state_dict().items()}


def test_evaluation_and_diagnostics_settings_never_change_training(tmp_path):
    base_losses, base = final_weights(tmp_path / "a", ["train.eval_every=500", "train.eval_episodes=2",
                                                       "train.diagnostics_every=300"])
    other_losses, other = final_weights(tmp_path / "b", ["train.eval_every=250", "train.eval_episodes=5",
                                                         "agent.eval_epsilon=0.5", "train.diagnostics_every=100"])
    assert len(base_losses) > 500
    assert base_losses == other_losses
    assert all(torch.equal(base[k], other[k]) for k in base)


# ----------------------------------------------------------------------------- fault 12: gradient_steps


class CountingBuffer:
    """Records when updates sample; num_added says the warm-up is over."""

    num_added = 10**9
    prioritized = False

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.step = 0

    def sample(self, batch_size: int, beta: float = 1.0):
        self.samples.append(self.step)
        raise _Sampled


class _Sampled(Exception):
    pass


def test_sb3_schedule_128_updates_every_256_steps_after_learning_starts():
    """SB3 (OffPolicyAlgorithm.learn): after every train_freq env steps, if num_timesteps >
    learning_starts, gradient_steps updates. rl-zoo CartPole: 128 every 256 steps, starts 1000."""
    cfg = config.build_run_config("dqn-zoo", "CartPole-v1")
    agent = DQN(cfg.agent, __import__("gymnasium").spaces.Box(-1, 1, (4,), np.float32), _actions(2))
    due = {step: agent.updates_due(step) for step in range(0, 3000)}
    sb3 = {}
    for step in range(0, 3000):
        rounds = sum(1 for t in range(256, step + 1, 256) if t > 1000)
        sb3[step] = 128 * rounds
    assert due == sb3
    assert due[1023] == 0 and due[1024] == 128 and due[1280] == 256


def test_interleaved_schedule_is_unchanged_for_gradient_steps_1():
    cfg = config.build_run_config("dqn", "pong")
    cfg.agent.encoder.kind = "mlp"
    agent = DQN(cfg.agent, __import__("gymnasium").spaces.Box(-1, 1, (4,), np.float32), _actions(2))
    for step in (0, 19_999, 20_000, 20_003, 20_004, 100_001):
        assert agent.updates_due(step) == max(0, (step - 20_000) // 4)


def test_the_target_period_counts_env_steps_with_batched_updates(tmp_path):
    cfg = config.build_run_config("dqn-zoo", "CartPole-v1", ["train.progress=false", "train.total_steps=1500",
                                                             "agent.gradient_steps=4", "agent.train_freq=256"])
    session = build_session(cfg, tmp_path)
    session.obs, _ = session.env.reset(seed=1)
    while session.step < 1500:
        advance(session)
    assert session.agent.num_updates == 4 * 2  # rounds at 1024 and 1280 (both > learning_starts 1000)
    assert session.agent.target_syncs == 1500 // 10  # a copy every 10 env steps, not every 10 updates


# ----------------------------------------------------------------------------- fault 7 / 8: networks


def dopamine_nature_parameters(actions: int, same: bool) -> int:
    """Dopamine's NatureDQNNetwork on 84x84x4: convs 32 8x8/4, 64 4x4/2, 64 3x3/1, Dense 512,
    Dense actions. Flax SAME padding: 84 -> 21 -> 11 -> 11; VALID (PyTorch): 84 -> 20 -> 9 -> 7."""
    side = 11 if same else 7
    convs = (8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64)
    return convs + (side * side * 64 * 512 + 512) + (512 * actions + actions)


def impala_parameters(actions: int, width: int = 1) -> int:
    """Dopamine/the GMP paper's Impala encoder: 3 stacks (16, 32, 32 x width) of conv3x3 + maxpool
    3x3/2 SAME + 2 residual blocks of two conv3x3; 84 -> 42 -> 21 -> 11; Dense 512; Dense actions."""
    total, in_ch = 0, 4
    for ch in (16 * width, 32 * width, 32 * width):
        total += 3 * 3 * in_ch * ch + ch + 4 * (3 * 3 * ch * ch + ch)
        in_ch = ch
    return total + (11 * 11 * in_ch * 512 + 512) + (512 * actions + actions)


@pytest.mark.parametrize("preset,expected", [("dqn", dopamine_nature_parameters(6, same=True)),
                                             ("dqn-gmp", impala_parameters(6)),
                                             ("dqn-cleanrl", dopamine_nature_parameters(6, same=False))])
def test_parameter_counts_match_the_reference_networks(preset, expected):
    assert agent_for(preset).parameter_count() == expected


def test_dopamine_and_cleanrl_heads_are_initialised_as_their_sources():
    dopamine, cleanrl = agent_for("dqn").online.head, agent_for("dqn-cleanrl").online.head
    assert torch.all(dopamine.bias == 0)
    assert dopamine.weight.abs().max() <= math.sqrt(6 / (512 + 6))
    # PyTorch's Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    assert torch.any(cleanrl.bias != 0)
    assert cleanrl.weight.abs().max() <= 1 / math.sqrt(512) + 1e-7


def test_cleanrl_preset_evaluates_at_end_epsilon():
    cfg = config.build_run_config("dqn-cleanrl", "breakout")
    assert cfg.agent.eval_epsilon == cfg.agent.epsilon_end == 0.01


# ----------------------------------------------------------------------------- fault 9: diagnostics


def test_srank_is_measured_on_a_diagnostics_batch_not_the_training_batch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(config.build_run_config("dqn-classic", "CartPole-v1", TINY + [
        "agent.batch_size=16", "agent.encoder.hidden=128,128", "train.total_steps=1200",
        "train.diagnostics_every=500", "train.diagnostics_batch=1024", "train.eval_episodes=1"]), tmp_path)
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    sranks = [e.value for e in events.Scalars("plasticity/srank")]
    assert sranks and max(sranks) > 16  # a 16-state batch could never give more than 16


# ----------------------------------------------------------------------------- fault 10: summaries


def test_final_table_and_tensorboard_show_domain_metrics(tmp_path, capsys):
    pytest.importorskip("nle")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config.build_run_config("dqn", "NetHackScore-v0", [
        "agent.encoder.kind=nethack", "agent.learning_starts=50", "replay.capacity=1000", "train.total_steps=100",
        "env.max_episode_steps=40", "train.eval_episodes=2", "train.eval_num_envs=1", "train.progress=false",
        "train.torch_threads=1", "agent.batch_size=4"])
    train(cfg, tmp_path)
    out = capsys.readouterr().out
    for metric in ("score", "depth", "xp", "turns"):
        assert re.search(rf"eval {metric}_mean\s+\S+", out), out
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    assert {"charts/eval_score", "charts/eval_depth", "charts/eval_turns"} <= set(events.Tags()["scalars"])
