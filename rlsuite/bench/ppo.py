"""`rlsuite bench ppo`: PPO training throughput against Stable-Baselines3, timed alike.

The rules are `rlsuite bench dqn`'s (rlsuite/bench/dqn.py), for PPO:

- Both sides run their real training entry points: rlsuite's `rlsuite.loops.train.train(cfg, run_dir)`
  (what `rlsuite train` calls: TensorBoard logging and plasticity diagnostics on, as configured;
  progress bar off) and SB3's `PPO(...).learn(total_timesteps=N)`.
- Identical algorithm settings, from one place (`settings`, rlsuite/bench/ppo_settings.py): CleanRL's
  PPO settings as the task's preset states them (`ppo-classic` = CleanRL ppo.py for CartPole, `ppo-atari` = CleanRL
  ppo_atari_envpool.py for Pong, `ppo-minatar` for MinAtar): envs x 128-step rollouts, 4 epochs x 4
  minibatches, Adam (lr 2.5e-4 annealed linearly to 0 over the rollouts, eps 1e-5), clip 0.2
  (classic) or 0.1, normalised advantages, entropy 0.01, gamma 0.99, lambda 0.95, global gradient
  clip 0.5, no target KL, torch threads, CPU. Where SB3 writes a setting differently it gets the
  value that makes the loss the same, and the test checks it field by field:
  * value loss: rlsuite (and CleanRL) minimise vf_coef * 0.5 * mean((V - R)^2); SB3 vf_coef * mean(...)
    (F.mse_loss), so SB3 gets vf_coef / 2 (0.25 for CleanRL's 0.5);
  * value clipping: CleanRL's clip_vloss takes max(unclipped, clipped) squared errors; SB3's
    clip_range_vf uses the clipped one alone. No setting of either makes them the same loss, so
    value clipping is off on both sides (agent.clip_vloss=false; SB3's default clip_range_vf=None);
    this is the one departure from the presets;
  * lr annealing: SB3 evaluates its schedule after each rollout's steps are counted (progress
    remaining 1 - (k+1)/K before update k), rlsuite (and CleanRL) before (1 - k/K); SB3 gets the
    schedule lr * (progress + 1/K), so update k uses lr * (1 - k/K) on both sides;
  * minibatches: SB3's batch_size = envs x 128 / 4.
  Same network layer for layer: separate 64-64 tanh MLPs for actor and critic (SB3's MlpPolicy
  with net_arch pi/vf [64, 64], Tanh), the MinAtar CNN (dqn_peers.MinAtarCNN as SB3's features
  extractor, net_arch []) and the Nature CNN (SB3's CnnPolicy), one trunk shared by both heads
  for the CNNs; orthogonal init on both sides (gain sqrt 2, heads 0.01 and 1: rlsuite
  encoder.init=orthogonal, SB3's ortho_init). Same envs: SB3 steps rlsuite's own single-env classes
  for classic control and MinAtar (its DummyVecEnv over them; rlsuite's gymnasium backend is the
  same in-process loop), and its AtariWrapper + VecFrameStack (DummyVecEnv) with rlsuite's ALE
  settings for Pong, where rlsuite runs envpool as `ppo-atari` does. Truncation bootstraps with
  gamma V(final obs) on both sides.
- Run lengths are whole rollouts (the steps are rounded up to a multiple of envs x 128), so both
  sides do the same number of updates (`updates` = gradient steps on both sides).
- Timed end to end, minus nothing: from before the envs and the model are built to the return of
  `train()` / `learn()` (module imports done before the clock, the same set on both sides).
  rlsuite's `train()` ends with a checkpoint and a one-game evaluation; that tail is included
  and reported apart (`tail_s`).
- Two rlsuite modes, fp32 and fast (`--fast`), as in `bench dqn` (rlsuite.bench.modes); every
  measurement in a fresh process; R repeats, interleaved (rlsuite-fp32, sb3, rlsuite-fast, ...),
  under the tuned malloc thresholds (`harness.MALLOC_ENV`; `allocators=` adds glibc's default). The
  loop, records and table are `harness.run_interleaved`'s.

CleanRL's PPO is not timed: its only PyPI release (0.4.8) has 2021 scripts on the old `gym`
package that do not run beside gymnasium 1.2.0 (the evidence: rlsuite/bench/dqn.py's docstring).
The CleanRL comparison is by settings only (the presets state CleanRL's values and this module
uses them).

Worker: `python -m rlsuite.bench.ppo IMPL TASK STEPS [ALGO_JSON [FAST_JSON]]` prints one JSON line
prefixed `RESULT `.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from rlsuite.bench import modes
from rlsuite.bench.harness import RESULT, run_interleaved, time_train
from rlsuite.bench.ppo_settings import (DEFAULT_TASKS, TASKS, Algo, algo_from_json, rlsuite_config, settings,
                                        warm_imports)
from rlsuite.errors import UserError

# TASKS, Algo, settings and rlsuite_config are also this bench's interface (tests, experiments/).
__all__ = ["TASKS", "Algo", "bench_ppo", "main", "rlsuite_config", "rlsuite_worker", "settings"]


# ----------------------------------------------------------------------------- orchestration


def bench_ppo(steps: int | None = None, repeats: int | None = None, tasks: str | list[str] | None = None,
              quick: bool = False, allocators: tuple[str, ...] = ("tuned",), algo: Algo = Algo(),
              fast: tuple[str, ...] = modes.DEFAULT_FAST, table: bool = True) -> list[dict[str, Any]]:
    """One record per task x allocator x (rlsuite-fp32, sb3, rlsuite-fast): steps/s min/median/max
    over `repeats` fresh processes (`fast`: the fast mode's config keys; empty: fp32 only)."""
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks or DEFAULT_TASKS)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise UserError(f"unknown bench ppo task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    repeats = repeats if repeats is not None else (1 if quick else 3)
    if repeats < 1 or (steps is not None and steps < 100):
        raise UserError("bench ppo needs --repeats >= 1 and --steps >= 100")
    lengths = {task: settings(task, steps or (TASKS[task].quick_steps if quick else TASKS[task].steps), algo)["steps"]
               for task in names}
    for task in names:
        modes.validate(fast, lambda f: rlsuite_config(settings(task, lengths[task], algo), f))
    return run_interleaved("ppo", "sb3", settings, lengths, repeats, allocators, algo, fast, table)


# ----------------------------------------------------------------------------- the rlsuite worker


def rlsuite_worker(task: str, steps: int, algo: Algo = Algo(), fast: tuple[str, ...] = ()) -> dict[str, Any]:
    """Time `rlsuite.loops.train.train(cfg, run_dir)` over `steps` env steps, in this process (`fast`:
    the mode's extra config keys)."""
    s = settings(task, steps, algo)
    cfg = rlsuite_config(s, fast)
    warm_imports(s)
    return time_train(cfg, "rlsuite-bench-ppo-")


def main(argv: list[str]) -> None:
    impl, task, steps = argv[0], argv[1], int(argv[2])
    algo = algo_from_json(argv[3] if len(argv) > 3 else "")
    fast = tuple(json.loads(argv[4])) if len(argv) > 4 else ()
    if impl == "rlsuite":
        result = rlsuite_worker(task, steps, algo, fast)
    else:
        from rlsuite.bench.ppo_peers import sb3_worker

        result = {**sb3_worker(task, steps, algo), **modes.peer_speed()}
    print(RESULT + json.dumps({**result, **modes.machine(settings(task, steps, algo)["device"])}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
