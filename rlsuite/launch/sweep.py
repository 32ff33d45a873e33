"""`rlsuite sweep`: run a grid of override sets × seeds as parallel `rlsuite train` processes.

Every arm × seed is an ordinary run directory `<out>/<arm>/s<seed>` (so `rlsuite eval`,
`rlsuite compare` and TensorBoard work on it), where the arm name spells its overrides
(`gmp.sparsity=0.95,encoder.width=3`). A sweep can be re-run: finished runs are skipped and
interrupted ones resumed. Each process gets `train.torch_threads=1` so `--jobs` processes share
the machine's cores without oversubscribing them.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlsuite.run import checkpoint, rundir
from rlsuite.errors import UserError


@dataclass
class Job:
    arm: str
    seed: int
    overrides: list[str]
    run_dir: Path


PATH_KEYS = ("env.start_states", "finetune.parent", "finetune.data", "offline.datasets", "offline.eval_games")
"""Config keys whose values (comma-separated) may name files or folders."""


def absolute_paths(overrides: list[str]) -> list[str]:
    """The overrides with every relative path made absolute: the values of PATH_KEYS (full or bare
    keys, as --set takes them) and of the assignments inside finetune.far, where such a path exists
    here. For Ray tasks and SLURM jobs, whose `rlsuite train` may start in another directory."""
    def named(key: str, full: str) -> bool:
        return key == full or full.endswith("." + key)

    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        name = key.strip()
        if sep and any(named(name, full) for full in PATH_KEYS):
            value = ",".join(_absolute(v) for v in value.split(","))
        elif sep and named(name, "finetune.far"):
            value = ",".join(absolute_paths([v])[0] for v in value.split(","))
        out.append(key + sep + value)
    return out


def _absolute(value: str) -> str:
    path = value.strip()
    return str(Path(path).resolve()) if path and not os.path.isabs(path) and os.path.exists(path) else value


def parse_grid(axes: list[str]) -> list[list[str]]:
    """['agent.gmp.sparsity=0,0.95', 'agent.encoder.width=1,3'] -> the 4 override lists."""
    values = []
    for axis in axes:
        if "=" not in axis:
            raise UserError(f"bad --grid {axis!r}: expected key=v1,v2,... e.g. --grid agent.gmp.sparsity=0,0.95")
        key, options = axis.split("=", 1)
        if not key.strip():
            raise UserError(f"bad --grid {axis!r}: no key before '='; expected key=v1,v2,...")
        if not options.strip():
            raise UserError(f"bad --grid {axis!r}: no values after '='; expected {key.strip()}=v1,v2,...")
        items = [v.strip() for v in options.split(",")]
        if not all(items):
            raise UserError(f"bad --grid {axis!r}: an empty value between commas; "
                            f"expected {key.strip()}=v1,v2,... with no empty value")
        repeated = sorted({v for v in items if items.count(v) > 1})
        if repeated:
            raise UserError(f"bad --grid {axis!r}: {', '.join(repeated)} given twice (each value is one arm)")
        values.append([f"{key.strip()}={v}" for v in items])
    return [list(combo) for combo in itertools.product(*values)] if values else [[]]


def arm_name(overrides: list[str]) -> str:
    """Short, filesystem-safe name: the last two key parts and the value of each override."""
    if not overrides:
        return "base"
    parts = []
    for item in overrides:
        key, value = item.split("=", 1)
        parts.append(".".join(key.split(".")[-2:]) + "=" + value)
    return ",".join(parts).replace("/", "-")


def plan_jobs(axes: list[str], seeds: list[int], out: Path) -> list[Job]:
    return [Job(arm_name(combo), seed, combo, out / arm_name(combo) / f"s{seed}")
            for combo in parse_grid(axes) for seed in seeds]


def job_state(job: Job, total_steps: int | None) -> str:
    """'done', 'partial' (resume it) or 'new'."""
    if (job.run_dir / "config.toml").is_file() and rundir.is_record(job.run_dir, total_steps):
        return "done"  # finished, its checkpoints removed (experiments/records.py)
    try:
        data = checkpoint.load(checkpoint.find(job.run_dir))
    except UserError:
        return "new"
    # Without --steps the run's own length counts (task sequences compute theirs from the tasks).
    target = total_steps if total_steps is not None else data["config"]["train"]["total_steps"]
    done = data["step"] >= target and (job.run_dir / "eval.jsonl").is_file()
    return "done" if done else "partial"


def command(job: Job, agent: str, env: str, base: list[str], steps: int | None, state: str) -> list[str]:
    cli = [sys.executable, "-m", "rlsuite.cli", "train"]
    sets = [a for item in base + job.overrides + [f"train.seed={job.seed}", "train.torch_threads=1",
                                                  "train.progress=false"] for a in ("--set", item)]
    steps_args = ["--steps", str(steps)] if steps else []
    if state == "partial":
        return cli + ["--resume", str(job.run_dir), *steps_args]
    return cli + [agent, "--env", env, "--run-dir", str(job.run_dir), *steps_args, *sets]


def run_sweep(agent: str, env: str, axes: list[str], seeds: list[int], out: Path, base: list[str],
              steps: int | None, jobs: int, say=print) -> list[tuple[Job, str]]:
    """Run every job (at most `jobs` at a time); returns (job, how it ended) per job, as
    `outcome` names it ('done', 'interrupted', 'failed' or 'in use')."""
    plan = plan_jobs(axes, seeds, out)
    say(f"sweep: {len(plan)} runs ({len(plan) // max(len(seeds), 1)} arms x {len(seeds)} seeds), {jobs} at a time -> {out}")
    pending, running, finished = list(plan), [], []
    started = time.time()
    while pending or running:
        while pending and len(running) < jobs:
            job = pending.pop(0)
            entry = start_job(job, agent, env, base, steps, say)
            if isinstance(entry, tuple):
                running.append(entry)
            else:
                finished.append((job, "in use" if entry is None else "done"))
        time.sleep(0.5)
        for entry in [r for r in running if r[1].poll() is not None]:
            job, proc, log = entry
            log.close()
            running.remove(entry)
            state = outcome(job, proc.returncode, steps)
            finished.append((job, state))
            label = {"done": "done", "interrupted": "INTERRUPTED (re-run the sweep to resume)",
                     "failed": f"FAILED (see {job.run_dir.parent / f's{job.seed}.log'})"}[state]
            say(f"  {label} {job.arm} s{job.seed}  [{len(finished)}/{len(plan)}, {time.time() - started:.0f}s]")
    return finished


def outcome(job: Job, code: int | None, total_steps: int | None) -> str:
    """How a sweep's run ended, from its exit code and its run directory: 'done'; 'interrupted'
    (SIGINT / SIGTERM stopped it early: it saved a checkpoint and exited 0, and a re-run resumes
    it); 'failed' (a non-zero exit code); 'in use' (code None: another process holds the run).
    Only a checkpoint short of the run's steps counts as interrupted: a run directory this process
    cannot see (a Ray worker's disk that is not shared) is taken at its exit code."""
    if code is None:
        return "in use"
    if code != 0:
        return "failed"
    return "interrupted" if job_state(job, total_steps) == "partial" else "done"


def start_job(job: Job, agent: str, env: str, base: list[str], steps: int | None, say=print):
    """Lock the job's run directory and start its `rlsuite train`, which inherits the lock.

    Returns (job, process, log), or an exit code without starting anything: 0 for a finished
    run, None for a run another process holds (a second sweep on the same --out, a lone train).
    """
    try:
        lock = rundir.acquire(job.run_dir)
    except rundir.RunInUse as exc:
        holder = exc.holder or {}
        say(f"  skip {job.arm} s{job.seed} (in use by pid {holder.get('pid', '?')} on {holder.get('host', '?')})")
        return None
    try:
        state = job_state(job, steps)
        if state == "done":
            say(f"  skip {job.arm} s{job.seed} (done)")
            rundir.release(lock)
            return 0
        log = open(job.run_dir.parent / f"s{job.seed}.log", "a")
        proc = subprocess.Popen(command(job, agent, env, base, steps, state), stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=(lock.fd,), env={**os.environ, rundir.ENV_FD: str(lock.fd)})
    except BaseException:
        rundir.release(lock)
        raise
    rundir.hand_over(lock)  # the child holds it now, until it exits
    say(f"  start {job.arm} s{job.seed}" + (" (resume)" if state == "partial" else ""))
    return job, proc, log


def default_jobs() -> int:
    return max(1, torch.get_num_threads())
