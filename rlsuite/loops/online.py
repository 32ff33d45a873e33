"""The online run, for every online agent: act, step, let the agent store and learn, log,
evaluate. It counts env steps.

    obs -> agent.step -> env.step -> agent.observe(Transition) -> log / eval

What an agent stores (DQN: a replay buffer; PPO: a rollout) and when it updates is the agent's
own (the protocol is rlsuite.agents.base); this loop has no per-agent branch. Task sequences
(`train.tasks`) switch envs at phase ends, and fine-tuning (rlsuite.loops.finetune) extends the
loop. Locking, resume, checkpoints, signals and the summary are the lifecycle's
(rlsuite.run.lifecycle); `OnlineRun` is what an online run brings to it.

Exact resume needs the agent's storage (DQN's replay buffer, `train.save_replay`) and an env
backend that can save its state (the gymnasium backends); otherwise the resumed run is correct
but not bit-identical, and says so.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlsuite import config
from rlsuite.agents import agent_classes
from rlsuite.agents.base import StorageContext, Transition
from rlsuite.envs import make as make_env
from rlsuite.errors import UserError
from rlsuite.loops import tasks
from rlsuite.loops.finetune import extensions_for
from rlsuite.run import checkpoint, lifecycle, preflight, seeding, speed
from rlsuite.run.evaluate import append_jsonl, eval_env_seeds, eval_scalars, evaluate, format_table
from rlsuite.run.lifecycle import Say, crossed
from rlsuite.run.monitor import Monitor, log_record
from rlsuite.run.profiling import PhaseTimer


@dataclass(kw_only=True)
class Session(lifecycle.Session):
    """The live objects of one online run."""

    env: Any
    eval_env: Any
    obs: Any = None
    phase: int = 0
    """Task sequences: the index of the task segment being trained."""
    phase_start: int = 0
    """Env step at which the current phase began."""

    @property
    def signature(self) -> dict[str, str]:
        return checkpoint.space_signature(self.env.single_observation_space, self.env.single_action_space)


def build_session(cfg: config.RunConfig, run_dir: Path, fresh: bool = True) -> Session:
    """Envs, agent and loop extensions of a run; `fresh=False` when a checkpoint will be loaded
    into it (a fine-tuning run then takes its weights from the checkpoint, not its parent)."""
    t = cfg.train
    lifecycle.seed_everything(t.seed, t.torch_threads)
    device = lifecycle.pick_device(t.device)
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
    return Session(cfg=cfg, run_dir=run_dir, env=env, eval_env=eval_env, agent=agent,
                   extensions=extensions_for(cfg, agent, fresh), timer=timer)


def train_env_seeds(cfg: config.RunConfig, phase: int, *restart: int) -> list[int]:
    """Per-env seeds of the training envs of a phase (`restart`: the step of a resume that
    could not restore the envs, so the restarted episodes are new ones)."""
    return seeding.env_seeds(cfg.train.seed, "train_env", phase, *restart, n=cfg.train.num_envs)


def storage_context(cfg: config.RunConfig, env: Any, phase: int) -> StorageContext:
    """What the agent needs to build a phase's storage (rlsuite.agents.base.StorageContext)."""
    return StorageContext(cfg, cfg.train.num_envs, env.single_observation_space, env.frame_stack, phase)


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_payload(s: Session) -> dict[str, Any]:
    """The agent's bulky storage first (the replay: its own atomic directory, which the checkpoint
    refers to), then the envs' state and the current observation."""
    s.agent.save_storage(s.run_dir / "replay")
    return {"env": s.env.state_dict() if hasattr(s.env, "state_dict") else None, "obs": s.obs}


def restore(s: Session, data: dict[str, Any], say: Say) -> bool:
    """Load a checkpoint into the session; returns whether the resume is exact."""
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
    return exact


def save_checkpoint(s: Session) -> Path | None:
    """Write a checkpoint of the session now (the lifecycle's, with this kind's payload)."""
    return lifecycle.save_checkpoint(RUN, s)


def restore_checkpoint(s: Session, say: Say) -> None:
    """Load the run directory's latest checkpoint into the session (the lifecycle's)."""
    lifecycle.restore_checkpoint(RUN, s, say)


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
    """Evaluate now on the run's eval envs: eval.jsonl record, TensorBoard, and the summary."""
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


def exploration_step(s: Session) -> int:
    """The step the epsilon schedule sees: counted from the phase start when it restarts per task."""
    t = s.cfg.train
    return s.step - s.phase_start if t.tasks and t.reset_exploration else s.step


# ----------------------------------------------------------------------------- one vector step


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
        actions = s.agent.step(s.obs, s.step, exploration_step(s))
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


# ----------------------------------------------------------------------------- the run kind


class OnlineRun:
    """What an online run brings to the lifecycle (rlsuite.run.lifecycle.RunKind): env steps."""

    unit = "step"

    def __init__(self) -> None:
        self.last_log = self.last_diagnostics = 0

    def check(self, cfg: config.RunConfig) -> None:
        tasks.validate(cfg)

    def preflight(self, cfg: config.RunConfig, say: Say) -> None:
        preflight.check(cfg)  # memory, process limits, replay slots: before any env or buffer is built
        line = preflight.waiting_line(cfg)
        if line:
            say(line)

    def build(self, cfg: config.RunConfig, run_dir: Path, fresh: bool) -> Session:
        return build_session(cfg, run_dir, fresh)

    def checkpoint_payload(self, s: Session) -> dict[str, Any]:
        return checkpoint_payload(s)

    def restore(self, s: Session, data: dict[str, Any], say: Say) -> bool:
        return restore(s, data, say)

    def start(self, s: Session, say: Say) -> None:
        cfg = s.cfg
        s.obs, _ = s.env.reset(seed=train_env_seeds(cfg, 0))
        storage = getattr(s.agent, "storage_description", lambda: "")()
        say(f"run {s.run_dir}  |  {cfg.algo} on {s.env.game} ({s.env.family}, {cfg.train.num_envs} envs)  |  "
            f"{s.agent.parameter_count():,} parameters" + (f"  |  {storage}" if storage else "")
            + f"  |  {s.agent.speed.describe()}")
        for warning in plan_warnings(s):
            say(f"warning: {warning}")

    def before_loop(self, s: Session, monitor: Monitor | None) -> None:
        self.last_log = self.last_diagnostics = s.step
        if s.cfg.train.tasks and monitor is not None:
            monitor.new_task(tasks.task_of(s.cfg, s.phase))

    def advance(self, s: Session, monitor: Monitor | None) -> int:
        """One vector step, its episodes and losses to the monitor, then a phase end or an evaluation when due."""
        t, n = s.cfg.train, s.env.num_envs
        result = advance(s)
        episode = result.info.get("episode")
        if episode is not None and episode["done"].any():
            monitor.episodes_done(s.step, episode)
        if result.metrics is not None and s.step - self.last_log >= t.log_every:
            self.last_log = s.step
            monitor.scalars(s.step, {**result.metrics, **s.agent.scalars(s.step)})
        if result.metrics is not None and s.step - self.last_diagnostics >= t.diagnostics_every > 0:
            self.last_diagnostics = s.step
            monitor.scalars(s.step, s.agent.diagnostics(s.step))
        monitor.tick(s.step, n, s.agent.status(s.step))
        if t.tasks and crossed(s.step, n, t.steps_per_task):
            end_phase(s, monitor)
            monitor.restart_rate(s.step)
        elif crossed(s.step, n, t.eval_every) and s.step < t.total_steps:
            summary = run_evaluation(s, monitor)
            monitor.write(f"eval @ {s.step:,}: mean {summary['mean']:.2f}  iqm {summary['iqm']:.2f}")
            monitor.restart_rate(s.step)
        return n

    def stop_now(self, s: Session) -> bool:
        return s.stop_requested

    def final_evaluation(self, s: Session, monitor: Monitor) -> dict[str, Any]:
        # A task sequence's last switch evaluation (every task, at the final step) is its final one.
        return s.last_eval if s.cfg.train.tasks and s.last_eval else run_evaluation(s, monitor)

    def report(self, s: Session, summary: dict[str, Any], seconds: float, done: int,
               monitor: Monitor) -> dict[str, Any]:
        profile = s.timer.report()  # {} unless train.profile
        if profile:
            monitor.scalars(s.step, {f"profile/{phase}_fraction": row["fraction"] for phase, row in profile.items()})
            checkpoint.atomic_write_bytes(s.run_dir / "profile.json",
                                          lambda fh: fh.write(json.dumps(profile, indent=1).encode()))
        monitor.close()
        sps = done / max(seconds, 1e-9)
        print_summary(s, summary, sps, monitor.recent_return())
        if profile:
            print(s.timer.format_table(f"where the time goes ({done:,} env steps on {s.agent.device})"))
        return {"steps_per_second": sps, **({"profile": profile} if profile else {})}


RUN = OnlineRun()
"""The kind that save_checkpoint / restore_checkpoint above use (a checkpoint needs no loop state)."""


def print_summary(s: Session, summary: dict[str, Any], sps: float, train_return: float) -> None:
    """The table printed at the end of a run: steps, speed, recent training return, final evaluation."""
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
