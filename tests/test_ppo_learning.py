"""PPO learns, through the CLI as a user runs it, with thresholds a broken agent misses.

- `ppo-classic` (CleanRL's ppo.py settings) solves CartPole-v1: best periodic evaluation (10 greedy
  games) >= 475 within 100k env steps for at least 2 of 3 seeds. A random policy scores ~22; an
  agent with a broken advantage, ratio or value target stays far below (CleanRL reports ~500 at
  this budget).
- The LSTM core carries information: on CartPole without its velocity entries
  (`env.hide_velocities`), a feed-forward policy cannot tell which way the pole moves and stays
  below 100, while the same agent with `agent.core=lstm` passes 200 within 60k steps, and so does
  `agent.core=lru` (rlsuite.nn.lru, its default ring init). A core whose state is not carried (or
  reset at the wrong step) scores like the feed-forward one; the feed-forward arm runs once for both.
Measured here (this 2-core machine, one torch thread): CartPole seeds 1-3 ~12 s each; masked
CartPole, LSTM ~35 s, feed-forward ~10 s, LRU ~30 s (0.82x the LSTM's CPU time: 60 s against 73 s
user, the two measured back to back on a loaded machine).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlsuite.run import speed
from rlsuite.cli import main


def best_eval(run_dir: Path) -> float:
    return max(json.loads(line)["mean"] for line in (run_dir / "eval.jsonl").read_text().splitlines())


def train(run_dir: Path, *args: str) -> float:
    assert main(["train", "ppo-classic", "--env", "CartPole-v1", "--run-dir", str(run_dir), "--no-progress",
                 "--set", "train.torch_threads=1", "--set", "train.checkpoint_every=0", *args]) == 0
    return best_eval(run_dir)


def test_ppo_solves_cartpole_within_100k_steps_for_2_of_3_seeds(tmp_path):
    """Also the fast-mode check: train.precision=auto keeps fp32 for these 64-64 MLPs (bf16 0.85x,
    `rlsuite bench networks`). bf16 passed the same bar (2 of 3 seeds >= 475) when run by hand; it
    is checked update by update in tests/test_speed.py instead, to keep make test short."""
    best = {seed: train(tmp_path / f"s{seed}", "--seed", str(seed), "--steps", "100000",
                        "--set", "train.eval_every=10000") for seed in (1, 2, 3)}
    assert sum(value >= 475 for value in best.values()) >= 2, f"best eval return per seed: {best}"


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has bf16 units: autocast emulates bf16 where they are missing (slower, the
    same numerics), and only rlsuite's start-up check would refuse it."""
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512_bf16"})


MASKED = ["--steps", "60000", "--set", "env.hide_velocities=true", "--set", "train.eval_every=20000"]


@pytest.fixture(scope="module")
def masked_feed_forward(tmp_path_factory) -> float:
    """The feed-forward arm of the recurrent-core test, trained once for both cores."""
    return train(tmp_path_factory.mktemp("masked") / "ff", *MASKED)


@pytest.mark.parametrize("core", ["lstm", "lru"])
def test_recurrent_core_remembers_what_one_observation_hides(core, masked_feed_forward, tmp_path):
    recurrent = train(tmp_path / core, *MASKED, "--set", f"agent.core={core}")
    assert masked_feed_forward < 100 and recurrent >= 200, f"feed-forward {masked_feed_forward}, {core} {recurrent}"



def test_bf16_is_not_the_fast_mode_of_an_lstm_on_low_dimensional_observations(tmp_path, bf16_cpu, capsys):
    """bf16 cost this agent learning (velocity-masked CartPole, 60k steps, best evaluation, seeds
    1-3: fp32 315 / 274 / 267, bf16 120 / 36 / 272: the LSTM must read small step-to-step
    differences of the features, which bf16's 8-bit mantissa rounds away). So `auto` keeps fp32 for
    it (its fast mode is the fp32 run tested above) and an explicit bf16 says so at start."""
    common = ["train", "ppo-classic", "--env", "CartPole-v1", "--steps", "512", "--no-progress",
              "--set", "env.hide_velocities=true", "--set", "agent.core=lstm", "--set", "train.eval_episodes=1"]
    assert main(common + ["--run-dir", str(tmp_path / "auto"), "--set", "train.precision=auto"]) == 0
    assert speed.load(tmp_path / "auto")["precision"] == "fp32"
    assert "auto keeps fp32: bf16 cost learning of an LSTM" in capsys.readouterr().out
    assert main(common + ["--run-dir", str(tmp_path / "bf16"), "--set", "train.precision=bf16"]) == 0
    assert "warning: bf16 cost learning of an LSTM" in capsys.readouterr().out
