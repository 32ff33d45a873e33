"""Learning parity: rlsuite PPO against Stable-Baselines3 PPO at identical settings.

    .venv/bin/python experiments/ppo_parity.py [--tasks cartpole,minatar-breakout] [--seeds 1,2,3]
        [--cartpole-steps 100000] [--minatar-steps 300000] [--out runs/ppo-parity]

Settings, networks and envs come from `rlsuite bench ppo` (rlsuite/bench/ppo.py: `settings`,
`rlsuite_config`; rlsuite/bench/ppo_peers.py: `build_sb3`), so they are the ones its tests check
field by field: CartPole-v1 with CleanRL ppo.py's settings (`ppo-classic`: 4 envs x 128 steps,
4 epochs x 4 minibatches, lr 2.5e-4 annealed, clip 0.2, entropy 0.01, value 0.5, lambda 0.95,
gradient clip 0.5, separate 64-64 tanh MLPs, orthogonal init), MinAtar Breakout with `ppo-minatar`'s
(8 envs, clip 0.1, the MinAtar CNN as one shared trunk, SB3 gets it as a features extractor).
On both sides value clipping is off (SB3 cannot express CleanRL's form; see rlsuite/bench/ppo.py)
and every run uses one torch thread. Step counts are rounded up to whole rollouts.

Final evaluation, both sides: the final policy plays 20 greedy games (most likely action) through
the same function, `rlsuite.run.evaluate.evaluate`, on rlsuite's evaluation env with the same seeds
(rlsuite: its end-of-run evaluation; SB3: `model.predict(deterministic=True)` behind an adapter).
Summary per task and side: mean over seeds of the per-seed means, with a 95% percentile-bootstrap
CI over seeds (`rlsuite.run.evaluate.bootstrap_ci`, 2000 resamples).

Each run is a separate process; results go to <out>/results.jsonl and finished runs are skipped,
so an interrupted sweep resumes. Needs SB3 (`pip install --no-deps stable-baselines3==2.9.2`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EPISODES = 20
SIDES = ("rlsuite", "sb3")


def _settings(task: str, steps: int, seed: int) -> dict[str, Any]:
    from rlsuite.bench.ppo import Algo, settings

    return settings(task, steps, Algo(threads=1, seed=seed), eval_episodes=EPISODES)


def rlsuite_run(task: str, steps: int, seed: int, run_dir: Path) -> dict[str, Any]:
    from rlsuite.loops.train import train
    from rlsuite.bench.ppo import rlsuite_config

    s = _settings(task, steps, seed)
    start = time.perf_counter()
    train(rlsuite_config(s), run_dir)
    wall = time.perf_counter() - start
    final = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    assert final["episodes"] == EPISODES and final["epsilon"] == 0.0 and final["step"] == s["steps"], final
    return {"mean": float(final["mean"]), "returns": final["episode_returns"], "steps": s["steps"], "wall_s": wall}


class GreedySB3:
    """rlsuite's acting interface (`act(obs, epsilon)`) over an SB3 model: its most likely action."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def act(self, obs: Any, epsilon: float, rng: Any = None) -> np.ndarray:
        assert epsilon == 0.0
        return np.asarray(self.model.predict(obs, deterministic=True)[0])


def sb3_run(task: str, steps: int, seed: int) -> dict[str, Any]:
    from rlsuite.bench.ppo import rlsuite_config
    from rlsuite.bench.ppo_peers import build_sb3
    from rlsuite.envs import make as make_env
    from rlsuite.run.evaluate import evaluate
    from rlsuite.run.evaluate import eval_env_seeds

    s = _settings(task, steps, seed)
    cfg = rlsuite_config(s)
    start = time.perf_counter()
    model = build_sb3(s, cfg.env)
    model.learn(total_timesteps=s["steps"])
    wall = time.perf_counter() - start
    assert model.num_timesteps == s["steps"]
    seeds = eval_env_seeds(cfg, s["steps"])  # the seeds of rlsuite's final evaluation
    env = make_env(cfg.env, cfg.train.eval_num_envs, seeds, evaluation=True)
    try:
        result = evaluate(GreedySB3(model), env, EPISODES, 0.0, seed=seeds)
    finally:
        env.close()
    returns = [float(r) for r in result.returns]
    return {"mean": float(np.mean(returns)), "returns": returns, "steps": s["steps"], "wall_s": wall}


def worker(side: str, task: str, steps: int, seed: int, out: Path) -> None:
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        if side == "rlsuite":
            result = rlsuite_run(task, steps, seed, out / task / "rlsuite" / f"s{seed}")
        else:
            result = sb3_run(task, steps, seed)
    print("RESULT " + json.dumps(result), flush=True)


def summary(results: list[dict[str, Any]]) -> list[str]:
    from rlsuite.run.evaluate import bootstrap_ci

    lines = []
    for task, steps in dict.fromkeys((r["task"], r["steps"]) for r in results):
        for side in SIDES:
            rows = sorted((r for r in results if (r["task"], r["steps"], r["side"]) == (task, steps, side)),
                          key=lambda r: r["seed"])
            if not rows:
                continue
            scores = np.array([r["mean"] for r in rows])
            lo, hi = bootstrap_ci(scores, stat=np.mean)
            lines.append(f"{task:17s} {side:8s} steps {rows[0]['steps']:,}  seeds {len(rows)}  mean {scores.mean():.1f}  "
                         f"95% CI [{lo:.1f}, {hi:.1f}]  per seed: {' / '.join(f'{x:.1f}' for x in scores)}  "
                         f"wall {np.mean([r['wall_s'] for r in rows]):.0f} s/run")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="cartpole,minatar-breakout")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--cartpole-steps", type=int, default=100_000)
    parser.add_argument("--minatar-steps", type=int, default=300_000)
    parser.add_argument("--out", default="runs/ppo-parity")
    parser.add_argument("--summary", action="store_true", help="print the summary of what is recorded, run nothing")
    parser.add_argument("--worker", nargs=4, metavar=("SIDE", "TASK", "STEPS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.worker:
        side, task, steps, seed = args.worker
        worker(side, task, int(steps), int(seed), out)
        return
    record_file = out / "results.jsonl"
    results = [json.loads(line) for line in record_file.read_text().splitlines()] if record_file.is_file() else []
    if not args.summary:
        out.mkdir(parents=True, exist_ok=True)
        steps_of = {"cartpole": args.cartpole_steps, "minatar-breakout": args.minatar_steps}
        for task in args.tasks.split(","):
            steps = _settings(task, steps_of[task], 0)["steps"]
            for seed in (int(x) for x in args.seeds.split(",")):
                for side in SIDES:  # interleaved, so a cut-short sweep still has both sides per seed
                    if any(r["task"] == task and r["side"] == side and r["seed"] == seed and r["steps"] == steps
                           for r in results):
                        continue
                    proc = subprocess.run([sys.executable, __file__, "--out", str(out), "--worker", side, task,
                                           str(steps), str(seed)], capture_output=True, text=True)
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode != 0 or not lines:
                        sys.exit(f"{side} {task} seed {seed} failed:\n{proc.stderr[-3000:]}")
                    row = {"task": task, "side": side, "seed": seed, **json.loads(lines[-1][len("RESULT "):])}
                    results.append(row)
                    with record_file.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{task} {side:8s} seed {seed}: mean of {EPISODES} greedy games {row['mean']:.1f} "
                          f"({row['wall_s']:.0f} s)", flush=True)
    for line in summary([r for r in results if r["task"] in args.tasks.split(",")]):
        print(line)


if __name__ == "__main__":
    main()
