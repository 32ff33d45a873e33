"""`rlsuite bench dqn`: DQN training throughput against Stable-Baselines3, timed alike.

The rules (they hold for every task in `TASKS`, and for any bench added the same way):

- Both sides run their real training entry points: rlsuite's `rlsuite.loops.train.train(cfg, run_dir)`
  (what `rlsuite train` calls: TensorBoard logging and plasticity diagnostics on, as configured;
  progress bar off) and SB3's `DQN(...).learn(total_timesteps=N)`.
- Identical algorithm settings, from one place (`settings`): Huber loss (SB3's smooth L1), global
  gradient-norm clip 10, vanilla targets (SB3 has no double DQN), Adam (lr 1e-4, eps 1e-8), the
  same linear epsilon schedule in env steps (SB3's progress-based schedule gets total_timesteps =
  the steps actually run), batch, buffer, learning_starts, train_freq, hard target update period,
  torch threads, one env, CPU. Same network layer for layer (MLP 64-64, the MinAtar CNN, the
  Nature CNN) and the same env: SB3 steps rlsuite's own single-env class for classic control and
  MinAtar, and its AtariWrapper with rlsuite's ALE settings for Atari.
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
  rlsuite-fp32, ...), under glibc's default malloc and under the tuned one (`MALLOC_ENV`), as
  separate records. Each record names its implementation, mode, speed settings and machine
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

A new task is one `Task` entry; a new network is one entry in `dqn_peers.SB3_NETWORKS`.
Worker: `python -m rlsuite.bench.dqn IMPL TASK STEPS [ALGO_JSON [FAST_JSON]]` prints one JSON line
prefixed `RESULT ` (FAST_JSON: the mode's config assignments, a JSON list).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlsuite.bench import modes
from rlsuite.errors import UserError

MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}
ALLOCATORS = {"glibc-default": {}, "tuned": MALLOC_ENV}
RESULT = "RESULT "


@dataclass(frozen=True)
class Task:
    """One benchmark task: what both sides train on. Everything else comes from `Algo`."""

    env: str
    """rlsuite env id; its family picks SB3's env (see dqn_peers.sb3_env)."""
    preset: str
    """rlsuite agent preset the config starts from (its env preset gives the env settings)."""
    network: str
    """'mlp', 'minatar' or 'nature': rlsuite encoder.kind and SB3's network (dqn_peers.SB3_NETWORKS)."""
    steps: int
    """Default env steps per measurement."""
    backend: str = "gymnasium"
    """rlsuite env backend: in-process, as SB3's DummyVecEnv."""
    learning_starts: int = 1_000
    """Env steps before the first update (capped at a tenth of the run, see `settings`)."""


TASKS = {
    "cartpole": Task("CartPole-v1", "dqn-classic", "mlp", steps=20_000),
    "minatar-breakout": Task("minatar:breakout", "dqn-minatar", "minatar", steps=20_000),
    # atari-cleanrl env settings = SB3's AtariWrapper: no sticky actions, 30 no-ops, skip 4, life
    # loss ends an episode, FIRE on reset, clipped rewards, 84x84 grey, 4 frames stacked.
    "pong": Task("pong", "dqn-cleanrl", "nature", steps=10_000),
}


@dataclass(frozen=True)
class Algo:
    """Algorithm settings both sides get (SB3's DQN defaults where it has one)."""

    lr: float = 1e-4
    adam_eps: float = 1e-8  # torch's Adam default, which SB3 uses
    gamma: float = 0.99
    batch_size: int = 32
    buffer_size: int = 100_000
    train_freq: int = 4
    gradient_steps: int = 1  # per train_freq env steps
    target_update: int = 1_000
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.1  # of the run, as SB3's exploration_fraction
    max_grad_norm: float = 10.0  # SB3's default clip
    loss: str = "huber"  # SB3: F.smooth_l1_loss
    double: bool = False  # SB3's DQN is vanilla
    hidden: tuple[int, ...] = (64, 64)  # SB3's MlpPolicy net_arch
    threads: int = 2
    seed: int = 0


def settings(task: str, steps: int, algo: Algo = Algo()) -> dict[str, Any]:
    """The one description of a measurement that both sides' configs are built from."""
    t = TASKS[task]
    return {**dataclasses.asdict(algo), "task": task, "env": t.env, "preset": t.preset, "network": t.network,
            "backend": t.backend, "steps": steps, "num_envs": 1, "device": "cpu",
            "learning_starts": max(algo.batch_size, min(t.learning_starts, steps // 10)),
            "eps_decay_steps": max(1, round(algo.eps_fraction * steps)),
            "rlsuite_eval_episodes": 1, "rlsuite_log_every": "default", "rlsuite_diagnostics_every": "default"}


def rlsuite_config(s: dict[str, Any], extra: tuple[str, ...] | list[str] = ()) -> Any:
    """rlsuite's RunConfig for settings `s`: the task's preset with every shared setting overridden
    (then `extra`: a mode's keys, see bench.modes)."""
    from rlsuite import config
    hidden = ",".join(str(h) for h in s["hidden"])
    overrides = [
        "agent.loss=" + s["loss"], f"agent.double={s['double']}", "agent.dueling=false", "agent.n_step=1",
        f"agent.lr={s['lr']}", "agent.lr_schedule=constant", f"agent.adam_eps={s['adam_eps']}",
        f"agent.gamma={s['gamma']}", f"agent.batch_size={s['batch_size']}",
        f"agent.learning_starts={s['learning_starts']}", f"agent.train_freq={s['train_freq']}",
        f"agent.gradient_steps={s['gradient_steps']}", "agent.epsilon_decay_start=0",  # SB3 decays from step 0
        f"agent.target_update_period={s['target_update']}", f"agent.epsilon_start={s['eps_start']}",
        f"agent.epsilon_end={s['eps_end']}", f"agent.epsilon_decay_steps={s['eps_decay_steps']}",
        f"agent.max_grad_norm={s['max_grad_norm']}", "agent.gmp.sparsity=0", "agent.nap.norm=none",
        "agent.nap.project=false", f"agent.encoder.kind={s['network']}", "agent.encoder.width=1",
        "agent.encoder.scale_dense=false", f"agent.encoder.hidden={hidden}", "agent.encoder.dense=512",
        "agent.encoder.padding=valid", "agent.encoder.init=torch",  # SB3's NatureCNN; its layers' default init
        f"replay.capacity={s['buffer_size']}", "replay.prioritized=false", "replay.on_device=false",
        f"env.backend={s['backend']}",
        f"train.total_steps={s['steps']}", f"train.num_envs={s['num_envs']}", f"train.seed={s['seed']}",
        f"train.device={s['device']}", f"train.torch_threads={s['threads']}", "train.progress=false",
        "train.eval_every=0", f"train.eval_episodes={s['rlsuite_eval_episodes']}", "train.eval_num_envs=1",
        "train.checkpoint_every=0", "train.save_replay=false",
    ]
    return config.build_run_config(s["preset"], s["env"], overrides + list(extra))


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
    return run_interleaved("dqn", "sb3", lengths, repeats, allocators, algo, fast, table)


def run_interleaved(bench: str, peer: str, lengths: dict[str, int], repeats: int, allocators: tuple[str, ...],
                    algo: Any, fast: tuple[str, ...], table: bool) -> list[dict[str, Any]]:
    """The loop of `rlsuite bench dqn` and `ppo`: per task, `repeats` rounds of rlsuite-fp32, the
    peer, rlsuite-fast (bench.modes.order) under each allocator, each a fresh `python -m
    rlsuite.bench.<bench>` process; then one record per task x allocator x impl-mode."""
    from importlib import import_module

    settings_of = import_module(f"rlsuite.bench.{bench}").settings
    results = []
    for task, n in lengths.items():
        runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in range(repeats):
            for alloc in allocators:
                for impl, mode in modes.order(peer, fast):
                    run = _measure_in_subprocess(bench, impl, task, n, alloc, algo, fast if mode == "fast" else ())
                    runs.setdefault((impl, mode, alloc), []).append(run)
                    rate = run.get("steps_per_s") or run.get("error")
                    print(f"bench {bench}: {task} {impl}-{mode} {alloc} {r + 1}/{repeats}: {rate}", file=sys.stderr,
                          flush=True)
        for alloc in allocators:
            group = [_summarise(bench, task, impl, mode, alloc, n, runs[(impl, mode, alloc)],
                                settings_of(task, n, algo), fast if mode == "fast" else ())
                     for impl, mode in modes.order(peer, fast)]
            modes.add_ratios(group, peer, "steps_per_s", f"ratio_vs_{peer}")
            results += group
    if table:
        print(modes.format_table(results, bench, peer), file=sys.stderr, flush=True)
    return results


def _summarise(bench: str, task: str, impl: str, mode: str, alloc: str, steps: int, runs: list[dict[str, Any]],
               s: dict[str, Any], fast: tuple[str, ...]) -> dict[str, Any]:
    record: dict[str, Any] = {"bench": bench, "task": task, "impl": impl, "mode": mode, "allocator": alloc,
                              "malloc_env": ALLOCATORS[alloc], "steps": steps, "repeats": len(runs),
                              "fast_overrides": list(fast)}
    good = [r for r in runs if r.get("steps_per_s")]
    errors = [r["error"] for r in runs if r.get("error")]
    if errors:
        record["error"] = errors[-1]
    described = good or runs  # the machine is described by the worker; a failed run has only the parent's view
    for key in (*modes.SPEED_FIELDS, "requested", "speed_reason", *MACHINE_KEYS):
        record[key] = modes.merged(described, key) if all(key in r for r in described) else _fallback(key, s)
    if not good:
        return {**record, "steps_per_s": None}
    rates = [r["steps_per_s"] for r in good]
    med = {k: round(statistics.median(r[k] for r in good), 3) for k in ("setup_s", "loop_s", "tail_s")}
    record.update(steps_per_s={"min": min(rates), "median": round(statistics.median(rates), 1), "max": max(rates)},
                  runs_steps_per_s=rates, wall_s=[r["wall_s"] for r in good], **{f"{k}_median": v for k, v in med.items()},
                  steps_run=sorted({r["steps"] for r in good}), updates=sorted({r["updates"] for r in good}),
                  versions=good[-1]["versions"], settings=s)
    if "total_timesteps" in good[-1]:  # SB3's own record of the run length its schedule used
        record["total_timesteps"] = sorted({r["total_timesteps"] for r in good})
    return record


MACHINE_KEYS = ("device", "torch_threads", "cpu", "cpu_bf16_flags", "gpu")


def _fallback(key: str, s: dict[str, Any]) -> Any:
    """A record field no run reported (every run failed): the settings' or this machine's value."""
    if key in modes.SPEED_FIELDS or key in ("requested", "speed_reason"):
        return None
    return s["threads"] if key == "torch_threads" else modes.machine(s["device"])[key]


def _measure_in_subprocess(bench: str, impl: str, task: str, steps: int, alloc: str, algo: Any,
                           fast: tuple[str, ...]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    threads = str(algo.threads)
    env.update(ALLOCATORS[alloc], OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", f"rlsuite.bench.{bench}", impl, task, str(steps),
           json.dumps(dataclasses.asdict(algo)), json.dumps(list(fast))]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"steps_per_s": None, "error": reason}
    return json.loads(lines[-1][len(RESULT):])


# ----------------------------------------------------------------------------- the rlsuite worker


def warm_imports(s: dict[str, Any]) -> None:
    """Import, before the clock, the modules either side would import lazily inside it (the env
    family's module, TensorBoard): module import is process start-up, not training. Same set both sides."""
    import importlib

    from rlsuite.envs import resolve_env_id

    family, _ = resolve_env_id(s["env"])
    extra = {"classic": ["rlsuite.envs.classic"], "minatar": ["rlsuite.envs.minatar", "minatar"],
             "atari": ["rlsuite.envs.atari", "ale_py", "cv2"]}.get(family, [])
    for name in ["rlsuite.loops.train", "rlsuite.envs.gym_backend", "torch.utils.tensorboard", "tqdm", *extra]:
        importlib.import_module(name)


def rlsuite_worker(task: str, steps: int, algo: Algo = Algo(), fast: tuple[str, ...] = ()) -> dict[str, Any]:
    """Time `rlsuite.loops.train.train(cfg, run_dir)` over `steps` env steps, in this process (`fast`:
    the mode's extra config keys)."""
    s = settings(task, steps, algo)
    cfg = rlsuite_config(s, fast)
    warm_imports(s)
    return time_train(cfg, "rlsuite-bench-dqn-")


def time_train(cfg: Any, prefix: str) -> dict[str, Any]:
    """Run `rlsuite.loops.train.train(cfg, run_dir)` in a temporary run directory and time it end to end
    and around its loop (the timing record of every `rlsuite bench` of a training entry point)."""
    import torch

    from rlsuite.loops.train import train
    from rlsuite.run import lifecycle
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    marks: dict[str, Any] = {}
    real_loop = lifecycle.loop

    def timed_loop(kind: Any, session: Any, monitor: Any) -> str:  # the instrument: two clock reads around it
        marks["loop_start"] = time.perf_counter()
        try:
            return real_loop(kind, session, monitor)
        finally:
            marks.update(loop_end=time.perf_counter(), updates=session.agent.num_updates, steps=session.step)

    lifecycle.loop = timed_loop
    try:
        with contextlib.redirect_stdout(sys.stderr):  # train()'s tables; stdout carries the result
            start = time.perf_counter()
            train(cfg, run_dir)
            end = time.perf_counter()
        plan = _read_json(run_dir / "speed.json")  # the run's resolved fast modes, where train() wrote them
    finally:
        lifecycle.loop = real_loop
        shutil.rmtree(run_dir, ignore_errors=True)
    result = _timing(start, marks["loop_start"], marks["loop_end"], end, marks["steps"], marks["updates"],
                     {"torch": torch.__version__})
    requested = modes.speed_fields(cfg.train)
    ran = {k: plan.get(k, v) for k, v in requested.items()} if plan else requested  # 'auto' resolved
    return {**result, **ran, "requested": requested, "speed_reason": (plan or {}).get("reason")}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _timing(start: float, loop_start: float, loop_end: float, end: float, steps: int, updates: int,
            versions: dict[str, str]) -> dict[str, Any]:
    wall = end - start
    return {"steps_per_s": round(steps / wall, 1), "wall_s": round(wall, 3), "setup_s": round(loop_start - start, 3),
            "loop_s": round(loop_end - loop_start, 3), "tail_s": round(end - loop_end, 3), "steps": steps,
            "updates": updates, "versions": versions}


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
