"""The measurement harness `rlsuite bench dqn` and `ppo` share (and `bench dt`'s workers use): each
measurement in a fresh `python -m rlsuite.bench.<bench>` process under a chosen malloc setting,
its result read back from one `RESULT ` line, the runs interleaved and summarised per task x
allocator x impl-mode, and the timing record of a training entry point (rlsuite's train() or a
peer's learn()) that both sides report alike."""
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
from pathlib import Path
from typing import Any, Callable

from rlsuite.bench import modes

MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}
ALLOCATORS = {"glibc-default": {}, "tuned": MALLOC_ENV}
RESULT = "RESULT "


def run_interleaved(bench: str, peer: str, settings_of: Callable[[str, int, Any], dict[str, Any]],
                    lengths: dict[str, int], repeats: int, allocators: tuple[str, ...], algo: Any,
                    fast: tuple[str, ...], table: bool) -> list[dict[str, Any]]:
    """The loop of `rlsuite bench dqn` and `ppo`: per task, `repeats` rounds of rlsuite-fp32, the
    peer, rlsuite-fast (bench.modes.order) under each allocator, each a fresh `python -m
    rlsuite.bench.<bench>` process; then one record per task x allocator x impl-mode, its settings
    from `settings_of(task, steps, algo)` (the bench's `settings`)."""
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


# ----------------------------------------------------------------------------- timing a training entry point


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
    result = timing(start, marks["loop_start"], marks["loop_end"], end, marks["steps"], marks["updates"],
                     {"torch": torch.__version__})
    requested = modes.speed_fields(cfg.train)
    ran = {k: plan.get(k, v) for k, v in requested.items()} if plan else requested  # 'auto' resolved
    return {**result, **ran, "requested": requested, "speed_reason": (plan or {}).get("reason")}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def timing(start: float, loop_start: float, loop_end: float, end: float, steps: int, updates: int,
           versions: dict[str, str]) -> dict[str, Any]:
    """The timing record of one measured run from its four clock reads: start, loop (or learn())
    start and end, end; `steps`/`updates` done, `versions` of the libraries that ran."""
    wall = end - start
    return {"steps_per_s": round(steps / wall, 1), "wall_s": round(wall, 3), "setup_s": round(loop_start - start, 3),
            "loop_s": round(loop_end - loop_start, 3), "tail_s": round(end - loop_end, 3), "steps": steps,
            "updates": updates, "versions": versions}
