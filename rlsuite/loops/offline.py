"""The offline training loop, for agents that learn from datasets (the Decision Transformer):

    sampler.sample_sequences -> agent.update -> log / evaluate in real envs / checkpoint

It counts gradient updates where the online loop (rlsuite.loops.online) counts env steps:
`train.total_steps`, `eval_every`, `checkpoint_every` and `log_every` are in updates. Everything
else is the online loop's own code: the run-directory lock, config checks and resume rules
(rlsuite.run.rundir), the checkpoint files (rlsuite.run.checkpoint), signals (SIGINT / SIGTERM finish the
update, write a checkpoint and return), evaluation (rlsuite.run.evaluate, with the eval env seeds and
exploration streams of rlsuite.loops.online), TensorBoard and the progress bar (rlsuite.run.monitor).

Evaluation plays each dataset's game on evaluation envs built from the env config the dataset
was collected with (its manifest), conditioned on the agent's target return. eval.jsonl gets one
record per evaluation: for one game, that game's summary; for several, `mean` is the mean over
games of each game's mean and `games` holds every game's summary.

Data-parallel training: started by `torchrun --nproc_per_node N -m rlsuite train dt ...`, every
rank builds the same session, the model is wrapped in DistributedDataParallel (gloo on CPU, NCCL on
GPU), every rank draws the same global batch and keeps its slice (rlsuite.data.sequences), and only
rank 0 logs, evaluates and writes checkpoints. A stop request on any rank stops all of them at the
same update. The sampler's stream is independent of the world size, so a run resumes under another.
DDP searches for unused parameters only when the agent says its forward leaves some unused
(`memory.variant=released`), and collectives wait up to PROCESS_GROUP_TIMEOUT (rank 0's evaluations).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsuite import config

from rlsuite.run import checkpoint, rundir, seeding, speed
from rlsuite.agents import agent_classes
from rlsuite.data.sequences import SequenceSampler
from rlsuite.errors import TrainingDiverged, UserError
from rlsuite.run.evaluate import append_jsonl, format_table
from rlsuite.run.monitor import Monitor, log_record
from rlsuite.loops.offline_games import EvalGame, evaluate_game, open_datasets, parent_games, resolve_games


def is_offline(algo: str) -> bool:
    agent_cls, _ = agent_classes(algo)
    return bool(getattr(agent_cls, "offline", False))


# ----------------------------------------------------------------------------- evaluation


def evaluate_all(s: "OfflineSession", monitor: Monitor | None) -> dict[str, Any]:
    """Evaluate every game at this update; eval.jsonl record, TensorBoard, and the summary."""
    from rlsuite.loops.online import eval_env_seeds, eval_scalars

    cfg, started = s.cfg, time.perf_counter()
    per_game: dict[str, dict[str, Any]] = {}
    for index, game in enumerate(s.games):
        rng = seeding.generator(cfg.train.seed, "eval_exploration", s.step, index)
        summary, target = evaluate_game(s.agent, cfg.agent, game, cfg.train.eval_episodes, cfg.train.eval_num_envs,
                                        eval_env_seeds(cfg, s.step, index), rng, cfg.agent.eval_epsilon)
        per_game[game.name] = {**summary, "target": target, **({"earlier": True} if game.earlier else {})}
    s.eval_seconds += time.perf_counter() - started
    if len(per_game) == 1:
        record = next(iter(per_game.values()))
    else:  # the mean is over the games this run trains on; earlier (parent) games are reported beside it
        means = [g["mean"] for g in per_game.values() if not g.get("earlier")]
        record = {"mean": float(np.mean(means)), "game": "+".join(per_game), "games": per_game}
    append_jsonl(s.run_dir / "eval.jsonl", {**log_record(s.step, record), "source": "periodic"})
    if monitor is not None:
        scalars = eval_scalars(record) if len(per_game) == 1 else {"charts/eval_mean": record["mean"]}
        if len(per_game) > 1:
            scalars.update({f"charts/eval_mean_{name}": g["mean"] for name, g in per_game.items()})
        monitor.scalars(s.step, scalars)
        monitor.recent_returns.append(record["mean"])
    s.last_eval = record
    return record


# ----------------------------------------------------------------------------- session


@dataclass
class OfflineSession:
    cfg: config.RunConfig
    run_dir: Path
    agent: Any
    sampler: SequenceSampler
    games: list[EvalGame]
    rng: np.random.Generator
    """The sampler's stream ('replay' of the run's seed): the same on every rank."""
    rank: int = 0
    world_size: int = 1
    step: int = 0
    stop_requested: bool = False
    last_checkpoint: Path | None = None
    last_eval: dict[str, Any] | None = None
    eval_seconds: float = 0.0

    @property
    def signature(self) -> dict[str, str]:
        return checkpoint.space_signature(self.sampler.observation_space, self.sampler.action_space)

    def say(self, message: str) -> None:
        if self.rank == 0:
            print(message)


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun (WORLD_SIZE > 1), else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=6)
"""How long a rank waits in a collective. Only rank 0 evaluates, while the others wait in the stop
flag's all_reduce; a long evaluation (many games, Atari episodes) can outlast torch's default (30
minutes; 10 for NCCL), which would kill the waiting ranks."""


def _init_distributed(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)


def ddp_options(agent: Any) -> dict[str, Any]:
    """Keyword arguments of DistributedDataParallel for `agent.model`: find_unused_parameters when
    the agent's forward leaves trainable parameters unused (DDP otherwise stops at the second
    update waiting for their gradients)."""
    unused = getattr(agent, "has_unused_parameters", lambda: False)()
    return {"find_unused_parameters": bool(unused)}


def build_session(cfg: config.RunConfig, run_dir: Path, fresh: bool = True) -> OfflineSession:
    """The session of a run; a fresh fine-tuning run (finetune.parent) starts from its parent's
    weights (a resumed one gets its own from its checkpoint)."""
    from rlsuite.loops.online import pick_device, seed_everything

    t = cfg.train
    rank, world = distributed()
    seed_everything(t.seed, t.torch_threads)
    device = pick_device(t.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if cfg.agent.batch_size % world:
        raise UserError(f"agent.batch_size ({cfg.agent.batch_size}) must be a multiple of the number of "
                        f"processes ({world})")
    datasets = open_datasets(cfg)
    if cfg.offline.weights and len(cfg.offline.weights) != len(datasets):
        raise UserError(f"offline.weights has {len(cfg.offline.weights)} numbers for {len(datasets)} datasets")
    sampler = SequenceSampler(datasets, cfg.offline.weights or None)
    agent_cls, _ = agent_classes(cfg.algo)
    agent = agent_cls(cfg.agent, sampler.observation_space, sampler.action_space, device, seed=t.seed)
    agent.plan(t.total_steps)
    if cfg.finetune.parent and fresh:
        _adopt_parent(agent, cfg.finetune.parent)
    speed.apply(agent, t, device, run_dir, resume=not fresh)  # before distribute(): the wrapper is wrapped
    if world > 1:
        _init_distributed(device)
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        agent.distribute(DistributedDataParallel(agent.model, device_ids=ids, **ddp_options(agent)), world)
    games = resolve_games(cfg, datasets)
    if cfg.finetune.parent and fresh and cfg.offline.eval_parent_games:
        games += parent_games(cfg.finetune.parent, games)
    return OfflineSession(cfg, run_dir, agent, sampler, games, seeding.generator(t.seed, "replay"), rank, world)


def _adopt_parent(agent: Any, parent: str) -> None:
    path = checkpoint.find(parent)
    data = checkpoint.load(path)
    if data.get("algo") != agent.name:
        raise UserError(f"{path} holds a {data.get('algo')} agent, not {agent.name}")
    try:
        agent.adopt_parent(data["agent"]["model"])
    except RuntimeError as exc:
        raise UserError(f"the weights of {path} do not fit this model ({str(exc).splitlines()[0][:160]})") from None


def save_checkpoint(s: OfflineSession) -> Path | None:
    if s.rank != 0:
        return None
    payload = {"algo": s.cfg.algo, "signature": s.signature, "config": config.to_dict(s.cfg), "step": s.step,
               "agent": s.agent.state_dict(), "rng": checkpoint.rng_state(),
               "sampler_rng": s.rng.bit_generator.state, "games": [dataclasses.asdict(g) for g in s.games]}
    s.last_checkpoint = checkpoint.save(s.run_dir, s.step, payload, keep=s.cfg.train.keep_checkpoints)
    return s.last_checkpoint


def restore_checkpoint(s: OfflineSession) -> None:
    path = checkpoint.find(s.run_dir)
    data = checkpoint.load(path)
    checkpoint.check_compatible(data, s.cfg.algo, s.signature, path)
    s.agent.load_state_dict(data["agent"])
    s.step = int(data["step"])
    s.rng.bit_generator.state = data["sampler_rng"]
    if s.cfg.offline.eval_parent_games:  # the parent's games, as the run's first checkpoint found them
        s.games += [EvalGame(**g) for g in data.get("games", []) if g.get("earlier")]
    checkpoint.set_rng_state(data["rng"])
    s.say(f"resumed from {path} at update {s.step:,} (exact)")


# ----------------------------------------------------------------------------- the loop


def _stop_everywhere(s: OfflineSession) -> bool:
    """Whether any rank was asked to stop (every rank stops after the same update)."""
    if s.world_size == 1:
        return s.stop_requested
    import torch.distributed as dist

    flag = torch.tensor([1.0 if s.stop_requested else 0.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def loop(s: OfflineSession, monitor: Monitor | None) -> str:
    from rlsuite.loops.online import _crossed

    t = s.cfg.train
    k = s.agent.context  # steps per training window (behaviour cloning: 1)
    last_log = s.step
    if s.step == 0 and s.cfg.finetune.parent and monitor is not None:  # the parent's own scores: the baseline
        summary = evaluate_all(s, monitor)                                # of adaptation and of forgetting
        monitor.write(f"eval @ update 0 (the parent): mean {summary['mean']:.2f}")
    while s.step < t.total_steps:
        batch = s.sampler.sample_sequences(s.cfg.agent.batch_size, k, s.rng, s.rank, s.world_size,
                                           getattr(s.agent, "burn_in_steps", 0))
        metrics = s.agent.update(batch)
        s.step += 1
        if monitor is not None:
            if s.step - last_log >= t.log_every or s.step == 1:
                last_log = s.step
                monitor.scalars(s.step, metrics)
            monitor.tick(s.step, 1, f"ce {metrics['losses/action_ce']:.3f}")
            if _crossed(s.step, 1, t.eval_every) and s.step < t.total_steps:
                summary = evaluate_all(s, monitor)
                monitor.write(f"eval @ update {s.step:,}: mean {summary['mean']:.2f}")
                monitor.restart_rate(s.step)
        if _crossed(s.step, 1, t.checkpoint_every):
            save_checkpoint(s)
        if _stop_everywhere(s):
            return "interrupted"
    return "finished"


def train_offline(cfg: config.RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) an offline run in `run_dir` (rank 0 holds the run lock: rlsuite.loops.online.train
    calls this inside it); returns the final evaluation summary."""
    try:
        return _train_offline(cfg, run_dir, resume)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _train_offline(cfg: config.RunConfig, run_dir: Path, resume: bool) -> dict[str, Any]:
    from rlsuite.loops.online import _install_signal_handlers, already_finished, pick_device

    rank, _ = distributed()
    say = print if rank == 0 else (lambda *_: None)
    speed.check(cfg.train, pick_device(cfg.train.device))  # unsupported fast modes: before anything is written
    changes = rundir.resume_changes(run_dir, cfg) if resume and rank == 0 else {}
    finished = already_finished(cfg, run_dir, say, "updates") if resume else None
    if finished is not None:
        return finished
    s = build_session(cfg, run_dir, fresh=not resume)
    if resume:
        try:
            restore_checkpoint(s)
        except RuntimeError as exc:
            raise UserError(f"the checkpoint of {run_dir} does not fit this config ({str(exc).splitlines()[0][:160]})") from None
        if rank == 0:
            rundir.record_resume(run_dir, s.step, changes)
    if rank == 0:
        checkpoint.atomic_write_bytes(run_dir / "config.toml", lambda fh: fh.write(config.dumps_toml(cfg).encode()))
        speed.save(run_dir, s.agent.speed)
    if resume:
        say(f"compute: {s.agent.speed.describe()}")
    else:
        say(f"run {run_dir}  |  {cfg.algo} on {len(s.sampler):,} steps of {len(s.games)} game(s) "
            f"({', '.join(g.name for g in s.games)})  |  {s.agent.parameter_count():,} parameters"
            + (f", {s.agent.trainable_count():,} trainable" if s.agent.trainable_count() != s.agent.parameter_count()
               else "")
            + (f"  |  from {cfg.finetune.parent}" if cfg.finetune.parent else "")
            + (f"  |  {s.world_size} processes" if s.world_size > 1 else "")
            + f"  |  {s.agent.speed.describe()}")
    previous = _install_signal_handlers(s)
    monitor = (Monitor(run_dir, cfg.train.total_steps, s.step, cfg.train.progress, cfg.train.status_every,
                       unit="update", resumed=resume) if rank == 0 else None)
    started, start_step = time.perf_counter(), s.step
    try:
        outcome = loop(s, monitor)
    except TrainingDiverged as exc:
        if monitor is not None:
            monitor.close()
        raise TrainingDiverged(f"training stopped: {exc}; last good checkpoint: {s.last_checkpoint or 'none'}") from None
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)
    save_checkpoint(s)
    if outcome == "interrupted" or rank != 0:
        if monitor is not None:
            monitor.close()
        say(f"interrupted at update {s.step:,}; checkpoint {s.last_checkpoint}; continue with: "
            f"rlsuite train --resume {run_dir}")
        return {"outcome": outcome, "step": s.step}
    summary = evaluate_all(s, monitor)
    monitor.close()
    seconds = time.perf_counter() - started - s.eval_seconds
    ups = (s.step - start_step) / max(seconds, 1e-9)
    print_summary(s, summary, ups)
    return {"outcome": outcome, "step": s.step, **summary, "updates_per_second": ups,
            "train_seconds": seconds, "eval_seconds": s.eval_seconds}


def print_summary(s: OfflineSession, summary: dict[str, Any], ups: float) -> None:
    games = summary.get("games") or {summary.get("game", "?"): summary}
    rows = [{"game": name + (" (earlier)" if g.get("earlier") else ""),
             **({"target": g["target"]} if g.get("target") is not None else {}), "episodes": g.get("episodes"), "mean": g.get("mean"),
             "iqm": g.get("iqm"), "min": g.get("min"), "max": g.get("max"),
             "data best": next((x.best_return for x in s.games if x.name == name), None)} for name, g in games.items()]
    print(format_table(rows, f"{s.cfg.algo}: final evaluation after {s.step:,} updates ({ups:,.1f} updates/s)"))
    print(f"run directory: {s.run_dir}   (tensorboard --logdir {s.run_dir.parent})")
