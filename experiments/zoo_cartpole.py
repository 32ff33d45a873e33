"""rl-baselines3-zoo's CartPole-v1 DQN recipe on Stable-Baselines3 and on rlsuite (`dqn-zoo`).

    .venv/bin/python experiments/zoo_cartpole.py [--seeds 1,2,3,4,5] [--out runs/zoo-cartpole]

Both sides: 50k env steps, 128 gradient steps every 256 env steps after 1000, the zoo's
hyperparameters (agents/dqn-zoo.toml states each); then the final policy plays 20 greedy games
of CartPole-v1 (SB3: `evaluate_policy(deterministic=True)`; rlsuite: its final evaluation at
epsilon 0). Prints one row per seed and the summary the README quotes: mean of the per-seed means
and how many seeds reach 475. Needs SB3 (`pip install --no-deps stable-baselines3==2.9.2`).
Each run is a separate process, one torch thread each; finished rlsuite runs are skipped.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
           target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
           exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
STEPS, EPISODES = 50_000, 20


def sb3_run(seed: int) -> float:
    """Train SB3's DQN with the zoo recipe and return the mean of 20 greedy games."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, verbose=0, **ZOO)
    model.learn(total_timesteps=STEPS)
    returns, _ = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=EPISODES, deterministic=True,
                                 return_episode_rewards=True)
    return float(sum(returns) / len(returns))


def rlsuite_run(seed: int, out: Path) -> float:
    run_dir = out / "rlsuite" / f"s{seed}"
    if not (run_dir / "eval.jsonl").is_file():
        cli = Path(sys.executable).with_name("rlsuite")
        subprocess.run([str(cli), "train", "dqn-zoo", "--env", "CartPole-v1", "--seed", str(seed), "--run-dir",
                        str(run_dir), "--no-progress", "--set", "train.torch_threads=1"], check=True,
                       stdout=subprocess.DEVNULL)
    final = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    assert final["episodes"] == EPISODES and final["epsilon"] == 0.0
    return float(final["mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--out", default="runs/zoo-cartpole")
    parser.add_argument("--only", choices=["sb3", "rlsuite"], help="run one side")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one SB3 seed in this process
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps({"mean": sb3_run(args.worker)}))
        return
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[float]] = {}
    for side in ("sb3", "rlsuite"):
        if args.only and side != args.only:
            continue
        for seed in seeds:
            if side == "sb3":
                proc = subprocess.run([sys.executable, __file__, "--worker", str(seed)], check=True,
                                      capture_output=True, text=True)
                score = json.loads(proc.stdout.strip().splitlines()[-1])["mean"]
            else:
                score = rlsuite_run(seed, out)
            results.setdefault(side, []).append(score)
            print(f"{side:8s} seed {seed}: mean of {EPISODES} greedy games {score:.1f}", flush=True)
    for side, scores in results.items():
        solved = sum(s >= 475 for s in scores)
        print(f"{side:8s} mean {sum(scores) / len(scores):.1f}  seeds >= 475: {solved} of {len(scores)}  "
              f"per seed: {' / '.join(f'{s:.1f}' for s in scores)}")


if __name__ == "__main__":
    main()
