"""`rlsuite bench dqn`: DQN training throughput against Stable-Baselines3, timed alike.

The rules (they hold for every task in `TASKS`, and for any bench added the same way):

- Both sides run their real training entry points: rlsuite's `rlsuite.loops.train.train(cfg, run_dir)`
  (what `rlsuite train` calls: TensorBoard logging and plasticity diagnostics on, as configured;
  progress bar off) and SB3's `DQN(...).learn(total_timesteps=N)`.
- Identical algorithm settings, from one place (`settings`, rlsuite/bench/dqn_settings.py): Huber
  loss (SB3's smooth L1), global gradient-norm clip 10, vanilla targets (SB3 has no double DQN),
  Adam (lr 1e-4, eps 1e-8), the same linear epsilon schedule in env steps (SB3's progress-based
  schedule gets total_timesteps = the steps actually run), batch, buffer, learning_starts,
  train_freq, hard target update period, torch threads, one env, CPU. Same network layer for layer
  (MLP 64-64, the MinAtar CNN, the Nature CNN) and the same env: SB3 steps rlsuite's own single-env
  class for classic control and MinAtar, and its AtariWrapper with rlsuite's ALE settings for Atari.
- Timed end to end, minus nothing: from before the envs and the model are built to the return of
  `train()` / `learn()` (module imports are done before the clock, the same set on both sides).
  rlsuite's `train()` also ends with a checkpoint and an evaluation of one game (the least it
  allows); that tail is included, and reported apart (`tail_s`).
- Two rlsuite modes (rlsuite.bench.modes): fp32 (the config's defaults) and fast (`--fast` keys,
  default train.precision=auto,train.memory_format=auto; `--fast none`: fp32 only); SB3 runs as it
  ships (fp32, eager). The fast mode's start-up work (train()'s auto measurement, torch.compile)
  is inside the clock, as a user of train() pays it (`setup_s` shows it). Each rlsuite mode gets
  its ratio to SB3 (`ratio_vs_sb3`), the fast one also to fp32 (`ratio_vs_fp32`).
- Every measurement in a fresh process; R repeats, interleaved (rlsuite-fp32, sb3, rlsuite-fast,
  rlsuite-fp32, ...), under glibc's default malloc and under the tuned one
  (`harness.MALLOC_ENV`), as separate records. Each record names its implementation, mode, speed settings and machine
  (`modes.RECORD_FIELDS`); a readable table goes to stderr, JSON lines to stdout.

CleanRL is not a third implementation, here or in `bench ppo`: the only CleanRL release on PyPI,
cleanrl 0.4.8 (`pip download cleanrl --no-deps`), does ship scripts (cleanrl/dqn.py, ppo.py,
dqn_atari.py, ppo_atari.py; no ppo_atari_envpool.py, no tyro), but they are the 2021 versions:
they import the old `gym` package (`from gym.wrappers import TimeLimit, Monitor`), call
`env.seed()` and gym's 4-tuple step, take `--gym-id` (not `--env-id`), import `distutils`, and the
package requires gym, wandb and seaborn. `pip install --no-deps` of it succeeds, but `python -m
cleanrl.dqn` fails here: no `gym` (rlsuite uses gymnasium 1.2.0); with gym 0.26.2 (the newest)
`ImportError: cannot import name 'Monitor' from 'gym.wrappers'`; gym 0.21.0 (the last with
Monitor) does not build with current setuptools ("'extras_require' must be a dictionary whose
values are ... valid project/version requirement specifiers": its `opencv-python>=3.` extra).
CleanRL's gymnasium/tyro scripts are in no package-index release, so it is not in the bench extra.

A new task is one `Task` entry in `dqn_settings.TASKS`; a new network is one entry in `dqn_peers.SB3_NETWORKS`.
Worker: `python -m rlsuite.bench.dqn IMPL TASK STEPS [ALGO_JSON [FAST_JSON]]` prints one JSON line
prefixed `RESULT ` (FAST_JSON: the mode's config assignments, a JSON list).
"""
from __future__ import annotations

import json
import sys
from typing import Any

from rlsuite.bench import modes
from rlsuite.bench.dqn_settings import TASKS, Algo, rlsuite_config, settings, warm_imports
from rlsuite.bench.harness import ALLOCATORS, RESULT, run_interleaved, time_train
from rlsuite.errors import UserError

# TASKS, Algo, settings and rlsuite_config are also this bench's interface (tests, experiments/).
__all__ = ["TASKS", "Algo", "bench_dqn", "main", "rlsuite_config", "rlsuite_worker", "settings"]


# ----------------------------------------------------------------------------- orchestration


def bench_dqn(steps: int | None = None, repeats: int | None = None, tasks: str | list[str] | None = None,
              quick: bool = False, allocators: tuple[str, ...] = tuple(ALLOCATORS), algo: Algo = Algo(),
              fast: tuple[str, ...] = modes.DEFAULT_FAST, table: bool = True) -> list[dict[str, Any]]:
    """One record per task x allocator x (rlsuite-fp32, sb3, rlsuite-fast): steps/s min/median/max
    over `repeats` fresh processes. `algo` changes the shared settings for both sides (e.g.
    `Algo(threads=1)`); `fast` the fast mode's config keys (empty: fp32 only, see bench.modes)."""
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks or TASKS)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise UserError(f"unknown bench dqn task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    repeats = repeats if repeats is not None else (1 if quick else 3)
    if repeats < 1 or (steps is not None and steps < 100):
        raise UserError("bench dqn needs --repeats >= 1 and --steps >= 100")
    lengths = {task: steps or (2_000 if quick else TASKS[task].steps) for task in names}
    for task in names:
        modes.validate(fast, lambda f: rlsuite_config(settings(task, lengths[task], algo), f))
    return run_interleaved("dqn", "sb3", settings, lengths, repeats, allocators, algo, fast, table)


# ----------------------------------------------------------------------------- the rlsuite worker


def rlsuite_worker(task: str, steps: int, algo: Algo = Algo(), fast: tuple[str, ...] = ()) -> dict[str, Any]:
    """Time `rlsuite.loops.train.train(cfg, run_dir)` over `steps` env steps, in this process (`fast`:
    the mode's extra config keys)."""
    s = settings(task, steps, algo)
    cfg = rlsuite_config(s, fast)
    warm_imports(s)
    return time_train(cfg, "rlsuite-bench-dqn-")


def main(argv: list[str]) -> None:
    impl, task, steps = argv[0], argv[1], int(argv[2])
    fields = json.loads(argv[3]) if len(argv) > 3 else {}
    fast = tuple(json.loads(argv[4])) if len(argv) > 4 else ()
    algo = Algo(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    if impl == "rlsuite":
        result = rlsuite_worker(task, steps, algo, fast)
    else:
        from rlsuite.bench.dqn_peers import sb3_worker

        result = {**sb3_worker(task, steps, algo), **modes.peer_speed()}
    print(RESULT + json.dumps({**result, **modes.machine(settings(task, steps, algo)["device"])}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
