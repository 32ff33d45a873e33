"""PPO end to end on the games the retention study starts from, short, through the CLI: PPO+RND on
Montezuma's Revenge (rooms logged), PPO+LSTM on NetHack (score and depth logged), then eval
(greedy and --sample), resume and a sparse export of a pruned PPO run."""
from __future__ import annotations

import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlsuite.cli import main

QUIET = ["--no-progress", "--set", "train.torch_threads=1", "--set", "train.eval_episodes=1", "--set", "train.log_every=32"]


def tags(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return set(events.Tags()["scalars"])


def last_eval(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])


def test_ppo_rnd_on_montezuma_logs_rooms_and_intrinsic_reward(tmp_path):
    run = tmp_path / "mr"
    assert main(["train", "ppo-rnd-montezuma", "--env", "montezuma", "--num-envs", "2", "--steps", "1024",
                 "--run-dir", str(run), "--set", "agent.num_steps=128", "--set", "agent.rnd.obs_norm_init_steps=128",
                 "--set", "env.max_episode_steps=150", *QUIET]) == 0
    logged = tags(run)
    assert {"rnd/intrinsic_reward", "rnd/predictor_loss", "losses/approx_kl", "charts/episodic_rooms"} <= logged
    assert last_eval(run)["rooms_mean"] >= 1  # the first room counts


def test_ppo_lstm_on_nethack_logs_score_and_depth_and_resumes(tmp_path, capsys):
    run = tmp_path / "nh"
    args = ["--run-dir", str(run), "--set", "agent.num_steps=16", "--set", "env.max_episode_steps=40", *QUIET]
    assert main(["train", "ppo-nethack", "--env", "NetHackScore-v0", "--num-envs", "2", "--steps", "96", *args[:2],
                 *args[2:]]) == 0
    assert {"charts/episodic_score", "charts/episodic_depth", "losses/value_loss"} <= tags(run)
    record = last_eval(run)
    assert record["depth_mean"] >= 1 and "score_mean" in record
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "160", "--no-progress"]) == 0
    out = capsys.readouterr().out
    # NLE cannot save a game, so episodes restart; the agent (weights, rollout, LSTM state) came back
    assert "resumed from" in out and "episodes restart" in out
    assert (run / "checkpoints" / "latest").read_text().strip().endswith("160.pt")
    assert main(["eval", str(run), "--episodes", "2", "--num-envs", "2", "--sample",
                 "--set", "env.max_episode_steps=30"]) == 0
    assert last_eval(run)["sample"] is True


def test_pruned_ppo_exports_sparse_and_evaluates_the_same(tmp_path, capsys):
    run = tmp_path / "cp"
    assert main(["train", "ppo-classic", "--env", "CartPole-v1", "--steps", "4096", "--run-dir", str(run),
                 "--set", "agent.gmp.sparsity=0.8", "--set", "agent.gmp.update_freq=4",
                 "--set", "agent.encoder.activation=relu", *QUIET]) == 0
    assert last_eval(run)["sparsity"] >= 0.79
    out = tmp_path / "sparse.pt"
    assert main(["export", str(run), "--sparse", "-o", str(out)]) == 0
    capsys.readouterr()
    for target in (run, out):
        assert main(["eval", str(target), "--episodes", "3", "--seed", "5"]) == 0
    first, second = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mean ")][:2]
    assert first == second
