"""`rlsuite bench dqn`: DQN training throughput against Stable-Baselines3, timed alike.

The rules (they hold for every task in `TASKS`, and for any bench added the same way):

- Both sides run their real training entry points: rlsuite's `rlsuite.train.train(cfg, run_dir)`
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
  `train()` / `learn()` (module imports are done before the clock, the same set on both sides). rlsuite's `train()` also ends with a checkpoint and an evaluation of one
  game (the least it allows); that tail is included, and reported apart (`tail_s`).
- Every measurement in a fresh process; R repeats, the sides interleaved (rlsuite, sb3, rlsuite,
  ...), under glibc's default malloc and under the tuned one (`MALLOC_ENV`), as separate records.

A new task is one `Task` entry; a new network is one entry in `dqn_peers.SB3_NETWORKS`.
Worker: `python -m rlsuite.bench.dqn IMPL TASK STEPS [ALGO_JSON]` prints one JSON line prefixed `RESULT `.
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

from rlsuite.errors import UserError

MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}
ALLOCATORS = {"glibc-default": {}, "tuned": MALLOC_ENV}
IMPLS = ("rlsuite", "sb3")
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


def rlsuite_config(s: dict[str, Any]) -> Any:
    """rlsuite's RunConfig for settings `s`: the task's preset with every shared setting overridden."""
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
    return config.build_run_config(s["preset"], s["env"], overrides)


# ----------------------------------------------------------------------------- orchestration


def bench_dqn(steps: int | None = None, repeats: int | None = None, tasks: str | list[str] | None = None,
              quick: bool = False, allocators: tuple[str, ...] = tuple(ALLOCATORS), algo: Algo = Algo()
              ) -> list[dict[str, Any]]:
    """One record per task x impl x allocator: steps/s min/median/max over `repeats` fresh processes.
    `algo` changes the shared settings for both sides (e.g. `Algo(threads=1)`)."""
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks or TASKS)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise UserError(f"unknown bench dqn task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    repeats = repeats if repeats is not None else (1 if quick else 3)
    if repeats < 1 or (steps is not None and steps < 100):
        raise UserError("bench dqn needs --repeats >= 1 and --steps >= 100")
    results = []
    for task in names:
        n = steps or (2_000 if quick else TASKS[task].steps)
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {(i, a): [] for i in IMPLS for a in allocators}
        for r in range(repeats):  # interleaved: rlsuite, sb3, rlsuite, sb3, ... under each allocator
            for alloc in allocators:
                for impl in IMPLS:
                    run = _measure_in_subprocess(impl, task, n, alloc, algo)
                    runs[(impl, alloc)].append(run)
                    rate = run.get("steps_per_s") or run.get("error")
                    print(f"bench dqn: {task} {impl} {alloc} {r + 1}/{repeats}: {rate}", file=sys.stderr, flush=True)
        for alloc in allocators:
            records = {impl: _summarise(task, impl, alloc, n, runs[(impl, alloc)], algo) for impl in IMPLS}
            ours, peer = (records[i]["steps_per_s"] for i in IMPLS)
            if ours and peer:
                records["rlsuite"]["ratio_vs_sb3"] = round(ours["median"] / peer["median"], 3)
            results += records.values()
    return results


def _summarise(task: str, impl: str, alloc: str, steps: int, runs: list[dict[str, Any]], algo: Algo
               ) -> dict[str, Any]:
    record: dict[str, Any] = {"bench": "dqn", "task": task, "impl": impl, "allocator": alloc,
                              "malloc_env": ALLOCATORS[alloc], "steps": steps, "repeats": len(runs)}
    good = [r for r in runs if r.get("steps_per_s")]
    errors = [r["error"] for r in runs if r.get("error")]
    if errors:
        record["error"] = errors[-1]
    if not good:
        return {**record, "steps_per_s": None}
    rates = [r["steps_per_s"] for r in good]
    med = {k: round(statistics.median(r[k] for r in good), 3) for k in ("setup_s", "loop_s", "tail_s")}
    record.update(steps_per_s={"min": min(rates), "median": round(statistics.median(rates), 1), "max": max(rates)},
                  runs_steps_per_s=rates, wall_s=[r["wall_s"] for r in good], **{f"{k}_median": v for k, v in med.items()},
                  steps_run=sorted({r["steps"] for r in good}), updates=sorted({r["updates"] for r in good}),
                  versions=good[-1]["versions"], settings=settings(task, steps, algo))
    if "total_timesteps" in good[-1]:  # SB3's own record of the run length its schedule used
        record["total_timesteps"] = sorted({r["total_timesteps"] for r in good})
    return record


def _measure_in_subprocess(impl: str, task: str, steps: int, alloc: str, algo: Algo) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    threads = str(algo.threads)
    env.update(ALLOCATORS[alloc], OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", "rlsuite.bench.dqn", impl, task, str(steps), json.dumps(dataclasses.asdict(algo))]
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
    for name in ["rlsuite.train", "rlsuite.envs.gym_backend", "torch.utils.tensorboard", "tqdm", *extra]:
        importlib.import_module(name)


def rlsuite_worker(task: str, steps: int, algo: Algo = Algo()) -> dict[str, Any]:
    """Time `rlsuite.train.train(cfg, run_dir)` over `steps` env steps, in this process."""
    s = settings(task, steps, algo)
    cfg = rlsuite_config(s)
    warm_imports(s)
    return time_train(cfg, "rlsuite-bench-dqn-")


def time_train(cfg: Any, prefix: str) -> dict[str, Any]:
    """Run `rlsuite.train.train(cfg, run_dir)` in a temporary run directory and time it end to end
    and around its loop (the timing record of every `rlsuite bench` of a training entry point)."""
    import torch

    from rlsuite import train as training

    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    marks: dict[str, Any] = {}
    real_loop = training.loop

    def timed_loop(session: Any, monitor: Any) -> str:  # the instrument: two clock reads around the loop
        marks["loop_start"] = time.perf_counter()
        try:
            return real_loop(session, monitor)
        finally:
            marks.update(loop_end=time.perf_counter(), updates=session.agent.num_updates, steps=session.step)

    training.loop = timed_loop
    try:
        with contextlib.redirect_stdout(sys.stderr):  # train()'s tables; stdout carries the result
            start = time.perf_counter()
            training.train(cfg, run_dir)
            end = time.perf_counter()
    finally:
        training.loop = real_loop
        shutil.rmtree(run_dir, ignore_errors=True)
    return _timing(start, marks["loop_start"], marks["loop_end"], end, marks["steps"], marks["updates"],
                   {"torch": torch.__version__})


def _timing(start: float, loop_start: float, loop_end: float, end: float, steps: int, updates: int,
            versions: dict[str, str]) -> dict[str, Any]:
    wall = end - start
    return {"steps_per_s": round(steps / wall, 1), "wall_s": round(wall, 3), "setup_s": round(loop_start - start, 3),
            "loop_s": round(loop_end - loop_start, 3), "tail_s": round(end - loop_end, 3), "steps": steps,
            "updates": updates, "versions": versions}


def main(argv: list[str]) -> None:
    impl, task, steps = argv[0], argv[1], int(argv[2])
    fields = json.loads(argv[3]) if len(argv) > 3 else {}
    algo = Algo(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    if impl == "rlsuite":
        result = rlsuite_worker(task, steps, algo)
    else:
        from rlsuite.bench.dqn_peers import sb3_worker

        result = sb3_worker(task, steps, algo)
    print(RESULT + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
