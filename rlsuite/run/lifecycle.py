"""The one lifecycle of every run: online runs (env steps), task sequences and fine-tuning runs
(extensions of the online loop), offline runs (gradient updates on datasets) and data-parallel
offline runs under torchrun.

    lock -> refusals -> already finished? -> build -> restore -> config.toml -> signals
         -> monitor -> loop -> last checkpoint -> final evaluation -> summary

What differs between kinds of run is a `RunKind` (rlsuite.loops.online.OnlineRun,
rlsuite.loops.offline.OfflineRun): how the session is built, what one advance of the loop is (one
vector env step and the agent's `observe`, or one gradient update from the sampler), the unit it
counts (env steps or updates), what a checkpoint holds beyond the common part, and how the run
evaluates and reports. Everything else is here, once.

Guarantees: the run directory's lock is held throughout (rank 0 under torchrun; rlsuite.run.rundir).
A resume writes nothing until the checkpoint has loaded into the new config, and refuses config
changes outside rlsuite.run.rundir.RESUMABLE. SIGINT / SIGTERM finish the current advance, write a
checkpoint and return normally. A NaN/inf loss (TrainingDiverged) stops the run before the bad
update reaches any checkpoint.
"""
from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from rlsuite import config
from rlsuite.errors import TrainingDiverged, UserError
from rlsuite.run import checkpoint, rundir, seeding, speed
from rlsuite.run.monitor import Monitor
from rlsuite.run.profiling import PhaseTimer

Say = Callable[[str], None]


@dataclass(kw_only=True)
class Session:
    """The live objects of one run that the lifecycle itself touches; each kind of run extends it."""

    cfg: config.RunConfig
    run_dir: Path
    agent: Any
    step: int = 0
    """Env steps (online) or gradient updates (offline) done."""
    stop_requested: bool = False
    last_checkpoint: Path | None = None
    last_eval: dict[str, Any] | None = None
    eval_seconds: float = 0.0
    """Wall time spent evaluating: not training, so not in the reported rate."""
    rank: int = 0
    world_size: int = 1
    extensions: list[Any] = field(default_factory=list)
    """Loop extensions (rlsuite.loops.finetune.FineTuning): start / begin / after_step / finish."""
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    """train.profile: where the loop's time goes (off: no-op)."""

    @property
    def signature(self) -> dict[str, str]:
        """The observation and action spaces a checkpoint must match (rlsuite.run.checkpoint)."""
        raise NotImplementedError


class RunKind(Protocol):
    """What a kind of run supplies to the lifecycle."""

    unit: str
    """What the loop counts, singular: 'step' (env steps) or 'update' (gradient updates)."""

    def check(self, cfg: config.RunConfig) -> None:
        """Refuse a config this kind cannot run (UserError), before anything is written."""

    def preflight(self, cfg: config.RunConfig, say: Say) -> None:
        """Checks of the machine against the run (memory, process limits), when there is work to do."""

    def build(self, cfg: config.RunConfig, run_dir: Path, fresh: bool) -> Session:
        """The session; `fresh=False` when a checkpoint will be loaded into it."""

    def checkpoint_payload(self, s: Session) -> dict[str, Any]:
        """What a checkpoint holds beyond algo, signature, config, step, agent and the global RNGs."""

    def restore(self, s: Session, data: dict[str, Any], say: Say) -> bool:
        """Load a checkpoint's agent, step and the kind's own state; returns whether the resume is exact."""

    def start(self, s: Session, say: Say) -> None:
        """A fresh run: initial state, the start line, warnings."""

    def before_loop(self, s: Session, monitor: Monitor | None) -> None:
        """Just before the first advance of this process (after a resume too)."""

    def advance(self, s: Session, monitor: Monitor | None) -> int:
        """One advance of the loop, with its logging and scheduled evaluations; returns the units done."""

    def stop_now(self, s: Session) -> bool:
        """Whether to stop after this advance (every rank stops after the same one)."""

    def final_evaluation(self, s: Session, monitor: Monitor) -> dict[str, Any]:
        """The evaluation at the end; its summary."""

    def report(self, s: Session, summary: dict[str, Any], seconds: float, done: int,
               monitor: Monitor) -> dict[str, Any]:
        """Print the summary table of `done` units in `seconds` of training; returns the rate fields."""


# ----------------------------------------------------------------------------- process set-up


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun (WORLD_SIZE > 1), else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def pick_device(name: str) -> torch.device:
    """'auto' is CUDA when torch sees a GPU, else the CPU; a CUDA device without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but torch sees no GPU; use --set train.device=cpu")
    return torch.device(name)


def seed_everything(seed: int, threads: int) -> None:
    """Seed the global RNGs from the run's own `global` stream. rlsuite's streams never draw from
    them (each has its own generator, rlsuite.run.seeding); this only pins what a library might use."""
    derived = seeding.int_seed(seed, "global")
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)
    torch.set_num_threads(max(1, threads))


def crossed(step: int, advanced: int, period: int) -> bool:
    """Did the counter pass a multiple of `period` during the last advance of `advanced` units?"""
    return period > 0 and step // period > (step - advanced) // period


def install_signal_handlers(s: Session) -> dict[int, Any]:
    """SIGINT / SIGTERM ask the loop to stop after the current advance; returns the previous handlers."""
    def request_stop(signum: int, _frame: Any) -> None:
        s.stop_requested = True

    return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(kind: RunKind, s: Session) -> Path | None:
    """The common payload plus the kind's own; rank 0 only (the others hold the same state)."""
    if s.rank != 0:
        return None
    payload = {"algo": s.cfg.algo, "signature": s.signature, "config": config.to_dict(s.cfg), "step": s.step,
               "agent": s.agent.state_dict(), "rng": checkpoint.rng_state(), **kind.checkpoint_payload(s)}
    s.last_checkpoint = checkpoint.save(s.run_dir, s.step, payload, keep=s.cfg.train.keep_checkpoints)
    return s.last_checkpoint


def restore_checkpoint(kind: RunKind, s: Session, say: Say) -> None:
    """Load the run's latest checkpoint into the session; UserError when it does not fit the config."""
    path = checkpoint.find(s.run_dir)
    data = checkpoint.load(path)
    checkpoint.check_compatible(data, s.cfg.algo, s.signature, path)
    try:
        exact = kind.restore(s, data, say)
    except RuntimeError as exc:  # load_state_dict: shapes or keys of another network
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the checkpoint of {s.run_dir} does not fit this config ({first})") from None
    checkpoint.set_rng_state(data["rng"])
    say(f"resumed from {path} at {kind.unit} {s.step:,}" + (" (exact)" if exact else ""))


def already_finished(cfg: config.RunConfig, run_dir: Path, say: Say, unit: str = "step") -> dict[str, Any] | None:
    """A resume of a run that reached its length and recorded its final evaluation does nothing:
    says so and returns the outcome (None when there is work left)."""
    if rundir.is_record(run_dir, cfg.train.total_steps):
        say(f"{run_dir} is finished (final evaluation at {cfg.train.total_steps:,} {unit}s recorded); nothing to "
            "do, and its checkpoints were removed, so it cannot be extended")
        return {"outcome": "already finished", "step": cfg.train.total_steps}
    step = rundir.checkpoint_step(run_dir)
    if not rundir.is_finished(run_dir, step, cfg.train.total_steps):
        return None
    say(f"{run_dir} is finished ({step:,} of {cfg.train.total_steps:,} {unit}s, final evaluation recorded); "
        "nothing to do (extend it with --steps N)")
    return {"outcome": "already finished", "step": step}


# ----------------------------------------------------------------------------- the lifecycle


def run(kind: RunKind, cfg: config.RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) one run of `kind` in `run_dir`; returns the final evaluation summary and
    the run's rates, or {"outcome": "interrupted" | "already finished", "step": ...}.

    Raises UserError for a config or checkpoint that cannot run (nothing written), RunInUse when
    another process holds the run directory, TrainingDiverged on a non-finite loss."""
    rank, _ = distributed()
    if rank > 0:  # torchrun: rank 0 holds the lock and writes; the other ranks only train
        return _run_locked(kind, cfg, run_dir, resume, rank)
    with rundir.locked(run_dir) as lock:
        if lock.stale:
            print(f"note: took over the lock of {rundir.describe_holder(lock.stale)}, which is no longer running")
        return _run_locked(kind, cfg, run_dir, resume, rank)


def _run_locked(kind: RunKind, cfg: config.RunConfig, run_dir: Path, resume: bool, rank: int) -> dict[str, Any]:
    say: Say = print if rank == 0 else (lambda *_: None)
    kind.check(cfg)
    speed.check(cfg.train, pick_device(cfg.train.device))  # unsupported fast modes: before anything is written
    changes = rundir.resume_changes(run_dir, cfg) if resume and rank == 0 else {}  # refuses before any write
    finished = already_finished(cfg, run_dir, say, kind.unit) if resume else None
    if finished is not None:
        return finished
    kind.preflight(cfg, say)
    s = _start(kind, cfg, run_dir, resume, changes, say)
    previous = install_signal_handlers(s)
    monitor = (Monitor(run_dir, cfg.train.total_steps, s.step, cfg.train.progress, cfg.train.status_every,
                       unit=kind.unit, resumed=resume) if rank == 0 else None)
    for extension in s.extensions:
        extension.begin(s, monitor)
    started, start_step = time.perf_counter(), s.step
    s.timer.start()
    try:
        outcome = loop(kind, s, monitor)
    except TrainingDiverged as exc:
        if monitor is not None:
            monitor.close()
        raise TrainingDiverged(f"training stopped: {exc}; last good checkpoint: "
                               f"{s.last_checkpoint or 'none written yet'}") from None
    finally:
        s.timer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    save_checkpoint(kind, s)
    if outcome == "interrupted" or monitor is None:
        if monitor is not None:
            monitor.close()
        say(f"interrupted at {kind.unit} {s.step:,}; checkpoint {s.last_checkpoint}; "
            f"continue with: rlsuite train --resume {run_dir}")
        return {"outcome": outcome, "step": s.step}
    summary = kind.final_evaluation(s, monitor)
    for extension in s.extensions:
        summary.update(extension.finish(s, monitor))
    seconds = time.perf_counter() - started - s.eval_seconds  # the rate of training alone
    rates = kind.report(s, summary, seconds, s.step - start_step, monitor)
    return {"outcome": outcome, "step": s.step, **summary, **rates, "train_seconds": seconds,
            "eval_seconds": s.eval_seconds}


def _start(kind: RunKind, cfg: config.RunConfig, run_dir: Path, resume: bool, changes: dict[str, Any],
           say: Say) -> Session:
    """Build the session and restore it on resume; only then write config.toml (and resume.log),
    so a resume that fails leaves the run directory as it was."""
    s = kind.build(cfg, run_dir, fresh=not resume)
    if resume:
        restore_checkpoint(kind, s, say)
        if s.rank == 0:
            rundir.record_resume(run_dir, s.step, changes)
    if s.rank == 0:
        checkpoint.atomic_write_bytes(run_dir / "config.toml", lambda fh: fh.write(config.dumps_toml(cfg).encode()))
        speed.save(run_dir, s.agent.speed)
    if resume:
        say(f"compute: {s.agent.speed.describe()}")
    else:
        kind.start(s, say)
        for extension in s.extensions:
            extension.start(s, say)
    return s


def loop(kind: RunKind, s: Session, monitor: Monitor | None) -> str:
    """Advance until train.total_steps, an interrupt, or divergence; returns 'finished' or 'interrupted'."""
    kind.before_loop(s, monitor)
    t = s.cfg.train
    while s.step < t.total_steps:
        advanced = kind.advance(s, monitor)
        for extension in s.extensions:
            extension.after_step(s, monitor)
        if crossed(s.step, advanced, t.checkpoint_every):
            save_checkpoint(kind, s)
        if kind.stop_now(s):
            return "interrupted"
    return "finished"
