"""The online training loop, for every online agent: act, step, let the agent store and learn,
log, checkpoint, evaluate.

    obs -> agent.step -> env.step -> agent.observe(Transition) -> log / eval / ckpt

What an agent stores (DQN: a replay buffer; PPO: a rollout) and when it updates is the agent's
own (the protocol is rlsuite.agents.base); this loop has no per-agent branch.

One `Session` holds everything a run touches. `train(cfg, run_dir)` starts a run,
`train(cfg, run_dir, resume=True)` continues it from its latest checkpoint. Exact resume needs
the agent's storage (DQN's replay buffer, `train.save_replay`) and an env backend that can save its state (the
gymnasium backends); otherwise the resumed run is correct but not bit-identical, and says so.

SIGINT / SIGTERM finish the current vector step, write a checkpoint and return normally.
A NaN/inf loss stops the run before the bad update is applied to any checkpoint.
"""
from __future__ import annotations

import json
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsuite import config

from rlsuite.loops import tasks

from rlsuite.run import checkpoint, preflight, rundir, seeding, speed
from rlsuite.agents import agent_classes
from rlsuite.agents.base import StorageContext, Transition
from rlsuite.envs import make as make_env
from rlsuite.errors import TrainingDiverged, UserError
from rlsuite.run.evaluate import append_jsonl, evaluate, format_table
from rlsuite.run.monitor import Monitor, log_record
from rlsuite.run.profiling import PhaseTimer


def pick_device(name: str) -> torch.device:
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


@dataclass
class Session:
    """The live objects of one run."""

    cfg: config.RunConfig
    run_dir: Path
    env: Any
    eval_env: Any
    agent: Any
    step: int = 0
    obs: Any = None
    stop_requested: bool = False
    last_checkpoint: Path | None = None
    last_eval: dict[str, Any] | None = None
    phase: int = 0  # task sequences: the index of the task segment being trained
    phase_start: int = 0  # env step at which the current phase began
    eval_seconds: float = 0.0  # wall time spent evaluating: not training, so not in steps/s
    extensions: list[Any] = field(default_factory=list)  # e.g. rlsuite.loops.finetune.FineTuning: start / after_step / finish
    timer: PhaseTimer = field(default_factory=PhaseTimer)  # train.profile: where the loop's time goes (off: no-op)

    @property
    def signature(self) -> dict[str, str]:
        return checkpoint.space_signature(self.env.single_observation_space, self.env.single_action_space)


def build_session(cfg: config.RunConfig, run_dir: Path, fresh: bool = True) -> Session:
    """Envs, agent and loop extensions of a run; `fresh=False` when a checkpoint will be loaded
    into it (a fine-tuning run then takes its weights from the checkpoint, not its parent)."""
    from rlsuite.loops.finetune import extensions_for

    t = cfg.train
    seed_everything(t.seed, t.torch_threads)
    device = pick_device(t.device)
    if t.tasks:
        env, eval_env = tasks.make_task_envs(cfg, phase=0)
    else:
        env = make_env(cfg.env, t.num_envs, train_env_seeds(cfg, 0))
        eval_env = make_env(cfg.env, t.eval_num_envs, eval_env_seeds(cfg, 0), evaluation=True)
    agent_cls, _ = agent_classes(cfg.algo)
    agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, device, seed=t.seed)
    agent.plan(t.total_steps)
    if cfg.replay.on_device and device.type != "cuda":
        raise UserError("replay.on_device needs a GPU learner (train.device=cuda)")
    agent.begin(storage_context(cfg, env, phase=0))
    speed.apply(agent, t, device, run_dir, resume=not fresh)  # after begin: PPO's probe needs the rollout shape
    timer = PhaseTimer(t.profile, device)
    agent.timer = timer  # the agent charges its own phases to it (DQN: add, sample, update)
    return Session(cfg, run_dir, env, eval_env, agent, extensions=extensions_for(cfg, agent, fresh), timer=timer)


def train_env_seeds(cfg: config.RunConfig, phase: int, *restart: int) -> list[int]:
    """Per-env seeds of the training envs of a phase (`restart`: the step of a resume that
    could not restore the envs, so the restarted episodes are new ones)."""
    return seeding.env_seeds(cfg.train.seed, "train_env", phase, *restart, n=cfg.train.num_envs)


def eval_env_seeds(cfg: config.RunConfig, step: int, task: int = 0) -> list[int]:
    """Per-env seeds of the evaluation at env step `step` of task `task` (index in the sequence)."""
    return seeding.env_seeds(cfg.train.seed, "eval_env", step, task, n=cfg.train.eval_num_envs)


def storage_context(cfg: config.RunConfig, env: Any, phase: int) -> StorageContext:
    """What the agent needs to build a phase's storage (rlsuite.agents.base.StorageContext)."""
    return StorageContext(cfg, cfg.train.num_envs, env.single_observation_space, env.frame_stack, phase)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(s: Session) -> Path:
    """The agent's bulky storage first (the replay: its own atomic directory), then the checkpoint
    that refers to it."""
    s.agent.save_storage(s.run_dir / "replay")
    payload = {
        "algo": s.cfg.algo,
        "signature": s.signature,
        "config": config.to_dict(s.cfg),
        "step": s.step,
        "agent": s.agent.state_dict(),
        "rng": checkpoint.rng_state(),
        "env": s.env.state_dict() if hasattr(s.env, "state_dict") else None,
        "obs": s.obs,
    }
    s.last_checkpoint = checkpoint.save(s.run_dir, s.step, payload, keep=s.cfg.train.keep_checkpoints)
    return s.last_checkpoint


def restore_checkpoint(s: Session, say: Any) -> None:
    path = checkpoint.find(s.run_dir)
    data = checkpoint.load(path)
    checkpoint.check_compatible(data, s.cfg.algo, s.signature, path)
    state = data["agent"]
    if data.get("buffer") is not None and state.get("replay") is None:  # checkpoints before the agent owned its replay
        state = {**state, "replay": data["buffer"]}
    s.agent.load_state_dict(state)
    s.step = int(data["step"])
    if s.cfg.train.tasks:  # the checkpoint may be from a later task than the one built
        enter_phase(s, tasks.phase_of(s.cfg, s.step), switching=False)
    exact = True
    if not s.agent.load_storage(s.run_dir / "replay"):
        exact = False
        say("note: no saved replay buffer; resuming with an empty one (pass --save-replay for exact resume)")
    if data.get("env") is not None and hasattr(s.env, "load_state_dict"):
        s.env.load_state_dict(data["env"])
        s.obs = data["obs"]
    else:
        exact = False
        s.obs, _ = s.env.reset(seed=train_env_seeds(s.cfg, s.phase, s.step))
        say("note: this env backend cannot save its state; episodes restart on resume")
    checkpoint.set_rng_state(data["rng"])
    say(f"resumed from {path} at step {s.step:,}" + (" (exact)" if exact else ""))


# ----------------------------------------------------------------------------- evaluation


def evaluate_now(s: Session, env: Any, task: int = 0) -> dict[str, Any]:
    """Evaluate the agent at this step on `env`: env seeds and exploration come from the run's
    eval streams for (step, task), so evaluating never moves a training stream. Returns the
    summary plus each game's return, length and metrics (EvalResult.per_episode)."""
    cfg = s.cfg
    rng = seeding.generator(cfg.train.seed, "eval_exploration", s.step, task)
    started = time.perf_counter()
    with s.timer.apart():  # train.profile: evaluation is not loop time
        result = evaluate(s.agent, env, cfg.train.eval_episodes, getattr(cfg.agent, "eval_epsilon", 0.0),
                          seed=eval_env_seeds(cfg, s.step, task), rng=rng)
    s.eval_seconds += time.perf_counter() - started
    return {**result.summary(), **result.per_episode()}


def run_evaluation(s: Session, monitor: Monitor | None) -> dict[str, Any]:
    cfg = s.cfg
    summary = evaluate_now(s, s.eval_env, tasks.task_index(cfg, s.phase) if cfg.train.tasks else 0)
    where = {"task": tasks.task_of(cfg, s.phase), "phase": s.phase, "source": "periodic"} if cfg.train.tasks else {}
    append_jsonl(s.run_dir / "eval.jsonl", {**log_record(s.step, summary), **where, **record_extras(s)})
    if monitor is not None:
        monitor.scalars(s.step, eval_scalars(summary))
    s.last_eval = summary
    return summary


def record_extras(s: Session) -> dict[str, Any]:
    """What the agent adds to each evaluation record (e.g. the achieved sparsity)."""
    return s.agent.record_extras() if hasattr(s.agent, "record_extras") else {}


def plan_warnings(s: Session) -> list[str]:
    """One line for each thing the run, as planned, cannot do: the agent's (updates, pruning,
    exploration schedule) and the loop's (no evaluation before the end)."""
    t = s.cfg.train
    fresh = t.steps_per_task if t.tasks and t.reset_replay else 0
    out = s.agent.plan_warnings(t.total_steps, fresh) if hasattr(s.agent, "plan_warnings") else []
    caution = getattr(s.agent, "bf16_caution", None)
    if s.agent.speed.bf16 and caution is not None:
        out.append(caution)
    if t.eval_every >= t.total_steps and not t.tasks:
        out.append(f"no evaluation before the end: train.eval_every={t.eval_every:,} >= {t.total_steps:,} steps")
    return out


# ----------------------------------------------------------------------------- task sequences


def switch_evaluation(s: Session, monitor: Monitor) -> dict[str, Any]:
    """At the end of a phase: evaluate every task of the sequence; returns the trained task's summary."""
    cfg, trained = s.cfg, tasks.task_of(s.cfg, s.phase)
    for index, task in enumerate(tasks.unique_tasks(cfg)):
        env = s.eval_env if task == trained else make_env(
            tasks.env_config(cfg, task), cfg.train.eval_num_envs, eval_env_seeds(cfg, 0, index), evaluation=True)
        try:
            summary = evaluate_now(s, env, index)
        finally:
            if env is not s.eval_env:
                env.close()
        record = {**log_record(s.step, summary), "task": task, "phase": s.phase, "source": "switch", **record_extras(s)}
        append_jsonl(s.run_dir / "eval.jsonl", record)
        monitor.scalars(s.step, {f"tasks/{task}/eval_mean": summary["mean"]})
        monitor.write(f"phase {s.phase} ({trained}) done @ {s.step:,}: {task} mean {summary['mean']:.2f}")
        if task == trained:
            s.last_eval = summary
    return s.last_eval or {}


def enter_phase(s: Session, phase: int, switching: bool = True) -> None:
    """Point the session at a phase's task: new envs, and the configured resets on a switch."""
    t = s.cfg.train
    s.env.close()
    s.eval_env.close()
    s.env, s.eval_env = tasks.make_task_envs(s.cfg, phase)
    s.phase, s.phase_start = phase, phase * t.steps_per_task
    if switching:
        s.obs, _ = s.env.reset(seed=train_env_seeds(s.cfg, phase))
        if t.reset_replay:
            s.agent.begin(storage_context(s.cfg, s.env, phase))
        if t.reset_optimizer:
            s.agent.reset_optimizer()


def end_phase(s: Session, monitor: Monitor) -> None:
    """A phase's last step was taken: evaluate every task, then move on to the next phase."""
    switch_evaluation(s, monitor)
    if s.step < s.cfg.train.total_steps:
        enter_phase(s, tasks.phase_of(s.cfg, s.step))
        monitor.new_task(tasks.task_of(s.cfg, s.phase))


def _exploration_step(s: Session) -> int:
    """The step the epsilon schedule sees: counted from the phase start when it restarts per task."""
    t = s.cfg.train
    return s.step - s.phase_start if t.tasks and t.reset_exploration else s.step


# ----------------------------------------------------------------------------- the loop


def _install_signal_handlers(s: Session) -> dict[int, Any]:
    def request_stop(signum: int, _frame: Any) -> None:
        s.stop_requested = True

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, request_stop)
    return previous


def _crossed(step: int, advanced: int, period: int) -> bool:
    """Did the step counter pass a multiple of `period` during the last vector step?"""
    return period > 0 and step // period > (step - advanced) // period


@dataclass
class StepResult:
    """What one vector step did: the actions taken, env info, and update metrics (or None)."""

    actions: np.ndarray
    info: dict[str, Any]
    metrics: dict[str, float] | None


def advance(s: Session) -> StepResult:
    """One vector step: the agent acts, the envs step, the agent stores it and learns what it owes.
    With env.async_step the envs step in their own threads while an agent that can
    (`learn_while_stepping`, DQN) does the updates owed by the step from the transitions already
    stored; `observe` then only stores (the learner sees each transition one vector step later).
    With train.profile each part is timed (rlsuite.run.profiling); "learn" is the part of `observe`
    the agent does not charge to a phase of its own (DQN: add, sample, update)."""
    with s.timer.phase("act"):
        actions = s.agent.step(s.obs, s.step, _exploration_step(s))
    if getattr(s.env, "asynchronous", False):  # env.async_step: learn while the env threads step
        s.env.send(actions)
        learn_ahead = getattr(s.agent, "learn_while_stepping", None)
        if learn_ahead is not None:
            with s.timer.phase("learn"):
                learn_ahead(s.step + s.env.num_envs)
        with s.timer.phase("env"):
            next_obs, reward, terminated, truncated, info = s.env.recv()
    else:
        with s.timer.phase("env"):
            next_obs, reward, terminated, truncated, info = s.env.step(actions)
    transition = Transition(s.obs, actions, reward, terminated, truncated, info.get("final_obs"), next_obs)
    s.obs = next_obs
    s.step += s.env.num_envs
    with s.timer.phase("learn"):
        metrics = s.agent.observe(transition, s.step)
    return StepResult(actions, info, metrics)


def loop(s: Session, monitor: Monitor) -> str:
    """Run until total_steps, an interrupt, or divergence. Returns how it ended."""
    t = s.cfg.train
    n = s.env.num_envs
    last_log = last_diagnostics = s.step
    if t.tasks:
        monitor.new_task(tasks.task_of(s.cfg, s.phase))
    while s.step < t.total_steps:
        result = advance(s)
        episode = result.info.get("episode")
        if episode is not None and episode["done"].any():
            monitor.episodes_done(s.step, episode)
        if result.metrics is not None and s.step - last_log >= t.log_every:
            last_log = s.step
            monitor.scalars(s.step, {**result.metrics, **s.agent.scalars(s.step)})
        if result.metrics is not None and s.step - last_diagnostics >= t.diagnostics_every > 0:
            last_diagnostics = s.step
            monitor.scalars(s.step, s.agent.diagnostics(s.step))
        monitor.tick(s.step, n, s.agent.status(s.step))
        if t.tasks and _crossed(s.step, n, t.steps_per_task):
            end_phase(s, monitor)
            monitor.restart_rate(s.step)
        elif _crossed(s.step, n, t.eval_every) and s.step < t.total_steps:
            summary = run_evaluation(s, monitor)
            monitor.write(f"eval @ {s.step:,}: mean {summary['mean']:.2f}  iqm {summary['iqm']:.2f}")
            monitor.restart_rate(s.step)
        for extension in s.extensions:
            extension.after_step(s, monitor)
        if _crossed(s.step, n, t.checkpoint_every):
            save_checkpoint(s)
        if s.stop_requested:
            return "interrupted"
    return "finished"


def train(cfg: config.RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) one run in `run_dir`; returns the final evaluation summary.

    Holds the run directory's lock throughout (rlsuite.run.rundir; RunInUse when another process
    has it). A resume writes nothing until the checkpoint has loaded into the new config, and
    refuses (UserError) config changes outside rlsuite.run.rundir.RESUMABLE. Resuming a finished
    run returns {"outcome": "already finished"} and writes nothing.
    """
    from rlsuite.loops.offline import distributed

    if distributed()[0] > 0:  # torchrun: rank 0 holds the lock and writes; the other ranks only train
        return _train_locked(cfg, run_dir, resume)
    with rundir.locked(run_dir) as lock:
        if lock.stale:
            print(f"note: took over the lock of {rundir.describe_holder(lock.stale)}, which is no longer running")
        return _train_locked(cfg, run_dir, resume)


def _start(cfg: config.RunConfig, run_dir: Path, resume: bool, changes: dict[str, Any], say: Any) -> Session:
    """Build the session and restore it on resume; only then write config.toml (and resume.log),
    so a resume that fails leaves the run directory as it was."""
    s = build_session(cfg, run_dir, fresh=not resume)
    if resume:
        try:
            restore_checkpoint(s, say)
        except RuntimeError as exc:  # load_state_dict: shapes or keys of another network
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise UserError(f"the checkpoint of {run_dir} does not fit this config ({first})") from None
        rundir.record_resume(run_dir, s.step, changes)
    checkpoint.atomic_write_bytes(run_dir / "config.toml", lambda fh: fh.write(config.dumps_toml(cfg).encode()))
    speed.save(run_dir, s.agent.speed)
    return s


def already_finished(cfg: config.RunConfig, run_dir: Path, say: Any, unit: str = "steps") -> dict[str, Any] | None:
    """A resume of a run that reached its length and recorded its final evaluation does nothing:
    says so and returns the outcome (None when there is work left). `unit`: steps or updates."""
    step = rundir.checkpoint_step(run_dir)
    if not rundir.is_finished(run_dir, step, cfg.train.total_steps):
        return None
    say(f"{run_dir} is finished ({step:,} of {cfg.train.total_steps:,} {unit}, final evaluation recorded); "
        "nothing to do (extend it with --steps N)")
    return {"outcome": "already finished", "step": step}


def _train_locked(cfg: config.RunConfig, run_dir: Path, resume: bool) -> dict[str, Any]:
    from rlsuite.loops.offline import is_offline, train_offline

    if is_offline(cfg.algo):  # agents that learn from datasets: the offline loop (rlsuite.loops.offline)
        return train_offline(cfg, run_dir, resume)
    say = print
    tasks.validate(cfg)
    speed.check(cfg.train, pick_device(cfg.train.device))  # unsupported fast modes: before anything is written
    changes = rundir.resume_changes(run_dir, cfg) if resume else {}  # refuses before anything is written
    finished = already_finished(cfg, run_dir, say) if resume else None
    if finished is not None:
        return finished
    preflight.check(cfg)  # memory, process limits, replay slots: before any env or buffer is built
    line = preflight.waiting_line(cfg)
    if line:
        say(line)
    s = _start(cfg, run_dir, resume, changes, say)
    if not resume:
        s.obs, _ = s.env.reset(seed=train_env_seeds(cfg, 0))
        storage = getattr(s.agent, "storage_description", lambda: "")()
        say(f"run {run_dir}  |  {cfg.algo} on {s.env.game} ({s.env.family}, {cfg.train.num_envs} envs)  |  "
            f"{s.agent.parameter_count():,} parameters" + (f"  |  {storage}" if storage else "")
            + f"  |  {s.agent.speed.describe()}")
        for warning in plan_warnings(s):
            say(f"warning: {warning}")
        for extension in s.extensions:
            extension.start(s, say)
    else:
        say(f"compute: {s.agent.speed.describe()}")
    previous = _install_signal_handlers(s)
    monitor = Monitor(run_dir, cfg.train.total_steps, s.step, cfg.train.progress, cfg.train.status_every,
                      resumed=resume)
    for extension in s.extensions:
        extension.begin(s, monitor)
    started, start_step = time.perf_counter(), s.step
    s.timer.start()
    try:
        outcome = loop(s, monitor)
    except TrainingDiverged as exc:
        monitor.close()
        kept = s.last_checkpoint or "none written yet"
        raise TrainingDiverged(f"training stopped: {exc}; last good checkpoint: {kept}") from None
    finally:
        s.timer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    save_checkpoint(s)
    if outcome == "interrupted":
        monitor.close()
        say(f"interrupted at step {s.step:,}; checkpoint {s.last_checkpoint}; "
            f"continue with: rlsuite train --resume {run_dir}")
        return {"outcome": outcome, "step": s.step}
    # A task sequence's last switch evaluation (every task, at the final step) is its final one.
    summary = s.last_eval if cfg.train.tasks and s.last_eval else run_evaluation(s, monitor)
    for extension in s.extensions:
        summary.update(extension.finish(s, monitor))
    profile = s.timer.report()  # {} unless train.profile
    if profile:
        monitor.scalars(s.step, {f"profile/{phase}_fraction": row["fraction"] for phase, row in profile.items()})
        checkpoint.atomic_write_bytes(run_dir / "profile.json",
                                      lambda fh: fh.write(json.dumps(profile, indent=1).encode()))
    monitor.close()
    training_seconds = time.perf_counter() - started - s.eval_seconds  # steps/s of training alone
    sps = (s.step - start_step) / max(training_seconds, 1e-9)
    print_summary(s, summary, sps, monitor.recent_return())
    if profile:
        print(s.timer.format_table(f"where the time goes ({s.step - start_step:,} env steps on {s.agent.device})"))
    return {"outcome": outcome, "step": s.step, **summary, "steps_per_second": sps,
            "train_seconds": training_seconds, "eval_seconds": s.eval_seconds, **({"profile": profile} if profile else {})}


def eval_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """TensorBoard scalars of an evaluation: return statistics, human-normalised scores and every
    domain metric's mean (charts/eval_score, charts/eval_depth, charts/eval_rooms, ...)."""
    out = {f"charts/eval_{k}": summary[k] for k in ("mean", "median", "iqm", "hns_iqm", "hns_mean")
           if isinstance(summary.get(k), (int, float))}
    for key, value in summary.items():
        if key.endswith("_mean") and key not in ("length_mean", "hns_mean") and isinstance(value, (int, float)):
            out[f"charts/eval_{key[:-len('_mean')]}"] = value
    return out


def print_summary(s: Session, summary: dict[str, Any], sps: float, train_return: float) -> None:
    rows = [{"metric": "env steps", "value": f"{s.step:,}"},
            {"metric": "steps/s (without eval)", "value": f"{sps:,.0f}"},
            {"metric": "recent train return", "value": "-" if math.isnan(train_return) else f"{train_return:.2f}"}]
    keys = ["episodes", "mean", "median", "iqm", "iqm_ci_lo", "iqm_ci_hi", "min", "max", "hns_mean", "hns_iqm"]
    # Domain metrics (NetHack score/depth/xp/turns, Montezuma rooms): evaluation reports their means.
    keys += [k for k in summary if k.endswith("_mean") and k not in ("length_mean", "hns_mean")]
    keys += ["far_return", "far_success", "far_kl"]  # fine-tuning runs (rlsuite.loops.finetune)
    for key in keys:
        if summary.get(key) is not None:
            value = summary[key]
            rows.append({"metric": f"eval {key}", "value": f"{value:.2f}" if isinstance(value, float) else str(value)})
    eps = getattr(s.cfg.agent, "eval_epsilon", 0.0)
    print(format_table(rows, f"{s.cfg.algo} on {s.env.game}: final evaluation (epsilon {eps})"))
    print(f"run directory: {s.run_dir}   (tensorboard --logdir {s.run_dir.parent})")
